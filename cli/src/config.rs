//! `allot serve`'s configuration in one place: its flags, their `ALLOT_*` variables and an
//! optional TOML file (`--config FILE` or `ALLOT_CONFIG`), parsed once by clap into
//! [`crate::serve::ServeArgs`], the one typed configuration, and validated there.
//!
//! A flag beats its variable, a variable beats the file, the file beats the default. The file's
//! keys are the flags' names without `--` (`cache_mb = 512` or `cache-mb = 512`). Its settings
//! are handed to clap as the variables they stand for, unless that variable is set already, so
//! clap parses and checks a file's value exactly as it would the variable's; an unknown key, a
//! value of the wrong kind or a value clap refuses is an error naming the setting and the file.
//!
//! `--print-config` prints the settings in effect as TOML, each with where it came from, secrets
//! redacted (the password of `--smtp-url`, whatever hides its variable's value).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// What [`load_file`] took from a configuration file.
#[derive(Debug, Default)]
pub struct FileSettings {
    /// The file, if one was named.
    pub path: Option<PathBuf>,
    /// The variables set from it (those not set in the environment already).
    pub variables: Vec<String>,
}

/// The flag that names the file, and its variable.
const CONFIG_FLAG: &str = "--config";
const CONFIG_VARIABLE: &str = "ALLOT_CONFIG";
/// Settings a file cannot make: what names the file, and what prints the configuration.
const NOT_IN_A_FILE: [&str; 2] = ["config", "print_config"];

/// The configuration file `allot serve` was given (`--config FILE`, `--config=FILE`, or
/// `ALLOT_CONFIG`), from the command line as typed.
fn named_file(args: &[OsString]) -> Option<PathBuf> {
    // The subcommand comes first, or after the one global flag (`--log-format F`).
    let mut first = 1;
    if args.get(first).is_some_and(|a| a == "--log-format") {
        first += 2;
    } else if args
        .get(first)
        .is_some_and(|a| a.to_string_lossy().starts_with("--log-format="))
    {
        first += 1;
    }
    if args.get(first).is_none_or(|a| a != "serve") {
        return None;
    }
    let mut rest = args.iter().skip(first + 1);
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == CONFIG_FLAG {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_VARIABLE).map(PathBuf::from)
}

/// Reads the configuration file of `allot serve`, if one is named in `args`, and hands each of
/// its settings to `serve` (the command's definition) as the variable it stands for. Call it
/// before any thread starts: it sets variables of this process.
pub fn load_file(serve: &Command, args: &[OsString]) -> anyhow::Result<FileSettings> {
    let Some(path) = named_file(args) else {
        return Ok(FileSettings::default());
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("the configuration file {} is not TOML", path.display()))?;
    let mut variables = Vec::new();
    for (key, value) in &table {
        let name = key.replace('-', "_");
        let arg = settings(serve).find(|a| a.get_id().as_str() == name);
        let Some(variable) = arg.and_then(|a| a.get_env()) else {
            bail!(
                "{}: unknown setting `{key}`; the settings are the flags of `allot serve` \
                 without `--` ({})",
                path.display(),
                known_settings(serve).join(", ")
            );
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => bail!(
                "{}: setting `{key}` must be a string, a whole number or a boolean",
                path.display()
            ),
        };
        if std::env::var_os(variable).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread exists, so no
            // other thread reads or writes the environment meanwhile.
            unsafe { std::env::set_var(variable, &text) };
            variables.push(variable.to_string_lossy().into_owned());
        }
    }
    Ok(FileSettings {
        path: Some(path),
        variables,
    })
}

/// The flags a configuration file may set: those with a variable, but what names the file
/// and what prints the configuration.
fn settings(serve: &Command) -> impl Iterator<Item = &clap::Arg> {
    serve
        .get_arguments()
        .filter(|a| a.get_env().is_some() && !NOT_IN_A_FILE.contains(&a.get_id().as_str()))
}

/// The keys a configuration file may hold.
fn known_settings(serve: &Command) -> Vec<String> {
    settings(serve).map(|a| a.get_id().to_string()).collect()
}

/// Where a setting came from, as `--print-config` says it.
fn source(serve: &Command, matches: &ArgMatches, id: &str, file: &FileSettings) -> Option<String> {
    let arg = serve.get_arguments().find(|a| a.get_id() == id)?;
    let variable = arg.get_env().map(|v| v.to_string_lossy().into_owned());
    Some(match matches.value_source(id)? {
        ValueSource::CommandLine => format!("--{}", arg.get_long().unwrap_or(id)),
        ValueSource::EnvVariable => match (&variable, &file.path) {
            (Some(v), Some(path)) if file.variables.contains(v) => path.display().to_string(),
            (Some(v), _) => v.clone(),
            _ => "environment".into(),
        },
        _ => "default".into(),
    })
}

/// `--print-config`: every setting of `allot serve` in effect, as TOML that `--config` takes
/// back, each with its source; secrets redacted.
pub fn print(serve: &Command, matches: &ArgMatches, file: &FileSettings) -> String {
    let mut out = String::from("# allot serve: the configuration in effect (secrets redacted)\n");
    for arg in settings(serve) {
        let id = arg.get_id().as_str();
        let value = matches
            .get_raw(id)
            .and_then(|mut values| values.next())
            .map(|v| v.to_string_lossy().into_owned());
        let from = source(serve, matches, id, file).unwrap_or_else(|| "unset".into());
        match value {
            Some(value) => {
                let value = if arg.is_hide_env_values_set() {
                    redacted(&value)
                } else {
                    value
                };
                out.push_str(&format!("{id} = {}  # {from}\n", toml_value(&value)));
            }
            None => out.push_str(&format!("# {id} is not set\n")),
        }
    }
    out
}

/// A value as TOML: numbers and booleans bare, everything else a string.
fn toml_value(value: &str) -> String {
    if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
        value.to_string()
    } else {
        // A JSON string is a TOML basic string (the same escapes).
        serde_json::Value::String(value.to_string()).to_string()
    }
}

/// A secret as it may be shown: a URL keeps its scheme, user and host but loses its password;
/// anything else is `***`.
fn redacted(value: &str) -> String {
    if let Some((scheme, rest)) = value.split_once("://")
        && let Some((userinfo, host)) = rest.rsplit_once('@')
    {
        let user = userinfo.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}:***@{host}");
    }
    if value.contains("://") && !value.contains('@') {
        // A URL without credentials holds no secret.
        return value.to_string();
    }
    "***".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_keeps_only_what_is_not_secret() {
        assert_eq!(
            redacted("smtps://ops:hunter2@mail.example.com:465"),
            "smtps://ops:***@mail.example.com:465"
        );
        assert_eq!(redacted("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        assert_eq!(redacted("hunter2"), "***");
    }

    #[test]
    fn values_print_as_toml() {
        assert_eq!(toml_value("512"), "512");
        assert_eq!(toml_value("true"), "true");
        assert_eq!(toml_value("127.0.0.1:8080"), "\"127.0.0.1:8080\"");
    }

    #[test]
    fn the_file_is_found_on_the_command_line_of_serve_only() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            named_file(&args(&["allot", "serve", "--config", "a.toml"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            named_file(&args(&[
                "allot",
                "serve",
                "--listen",
                "x",
                "--config=b.toml"
            ])),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            named_file(&args(&["allot", "db", "--config", "a.toml"])),
            None
        );
    }
}
