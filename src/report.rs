//! placeholder stand-in (being written).
pub fn summarize(_t: &str) -> Result<String, std::io::Error> { Ok(String::new()) }
pub fn write_har(_t: &str, _o: &std::path::Path) -> Result<usize, std::io::Error> { Ok(0) }
