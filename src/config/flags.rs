//! The command-line face of the keys: each command names the keys it takes flags for (a
//! [`KeySet`]), and [`FlagSet`] turns that set into clap arguments — built from the one key
//! table, so a flag's name, value name, help and default are written once — and back into
//! [`Overrides`].

use super::{flag_args, Overrides};
use clap::{value_parser, Arg, ArgMatches, Args, Command, FromArgMatches};
use std::marker::PhantomData;
use std::path::PathBuf;

/// The keys a command takes flags for, by key name (`"hsts_store"`).
pub trait KeySet {
    /// The flags shown in `--help`; `&["*"]` for every key that has a flag.
    const KEYS: &'static [&'static str];
    /// Flags accepted but left out of `--help`, so that older invocations keep working.
    const HIDDEN: &'static [&'static str] = &[];
    /// Whether the flags are also accepted after a nested subcommand (`hsts list --preload F`).
    const GLOBAL: bool = false;
}

/// `--config FILE` and the flags of the keys in `S`, for `#[command(flatten)]`.
#[derive(Debug)]
pub struct FlagSet<S> {
    /// The TOML file given with `--config`.
    pub config: Option<PathBuf>,
    /// The values the flags gave.
    pub overrides: Overrides,
    keys: PhantomData<S>,
}

impl<S> FlagSet<S> {
    /// `--config` and the overrides of `self`, each replaced by `later`'s where `later` gives
    /// one: a subcommand's flags win over the same flags given before the subcommand.
    pub fn merge<T>(self, later: FlagSet<T>) -> (Option<PathBuf>, Overrides) {
        (
            later.config.or(self.config),
            self.overrides.merge(later.overrides),
        )
    }
}

impl<S> Clone for FlagSet<S> {
    fn clone(&self) -> Self {
        FlagSet {
            config: self.config.clone(),
            overrides: self.overrides.clone(),
            keys: PhantomData,
        }
    }
}

fn config_arg() -> Arg {
    Arg::new("config")
        .long("config")
        .value_name("FILE")
        .value_parser(value_parser!(PathBuf))
        .help("TOML configuration file (see config/strictproxy.toml); flags win over it")
}

impl<S: KeySet> Args for FlagSet<S> {
    fn augment_args(cmd: Command) -> Command {
        let all = S::KEYS == ["*"];
        let flags = flag_args();
        for key in S::KEYS.iter().chain(S::HIDDEN) {
            debug_assert!(
                all && *key == "*" || flags.iter().any(|(k, _)| k == key),
                "{key} is not a key with a flag"
            );
        }
        let mut cmd = cmd.arg(config_arg().global(S::GLOBAL));
        for (key, arg) in flags {
            let arg = arg.global(S::GLOBAL);
            if all || S::KEYS.contains(&key) {
                cmd = cmd.arg(arg);
            } else if S::HIDDEN.contains(&key) {
                cmd = cmd.arg(arg.hide(true));
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<S> FromArgMatches for FlagSet<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(FlagSet {
            config: matches
                .try_get_one::<PathBuf>("config")
                .ok()
                .flatten()
                .cloned(),
            overrides: Overrides::from_matches(matches),
            keys: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}
