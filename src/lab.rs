//! placeholder: the lab (being written).
pub async fn run(_config: crate::config::Config) -> Result<(), std::io::Error> {
    Ok(())
}
