//! `HostAccountConfig`: the CCG plugin of a domainless gMSA and the input it reads.

use serde_json::{Map, Value};

use super::super::plugins::{self, Plugin};
use crate::syntax;

use super::{join, present, type_name, Checker, HOST_ACCOUNT_KEYS};

impl Checker {
    pub(super) fn host_account_config(&mut self, ad: &Map<String, Value>, path: &str) {
        let path = join(path, "HostAccountConfig");
        let host = match present(ad, "HostAccountConfig") {
            None => return,
            Some(Value::Object(h)) => h,
            Some(other) => {
                self.push(path, format!("must be an object, not {}", type_name(other)));
                return;
            }
        };
        let (given, absent): (Vec<&str>, Vec<&str>) = HOST_ACCOUNT_KEYS
            .iter()
            .partition(|k| present(host, k).is_some());
        if given.is_empty() {
            self.push(
                path,
                "is empty: remove it (domain-joined hosts), or give PortableCcgVersion, PluginGUID and PluginInput (a CCG plugin)",
            );
            return;
        }
        if !absent.is_empty() {
            self.push(
                &path,
                format!(
                    "has {} but not {}: a CCG plugin needs all of PortableCcgVersion, PluginGUID and PluginInput, a domain-joined host none",
                    given.join(" and "),
                    absent.join(" and ")
                ),
            );
        }
        let mut plugin = None;
        for key in given {
            let key_path = join(&path, key);
            if key == "PluginInput" {
                self.plugin_input(host, &key_path, plugin);
                continue;
            }
            let what = if key == "PluginGUID" {
                "the CCG plugin's GUID"
            } else {
                "the portable CCG version, \"1\""
            };
            let Some(value) = self.string(host, key, &key_path, what) else {
                continue;
            };
            match key {
                "PluginGUID" => match syntax::guid(value) {
                    Err(e) => self.push(key_path, e.to_string()),
                    Ok(bare) => {
                        if !(value.starts_with('{') && value.ends_with('}')) {
                            self.push(
                                &key_path,
                                format!(
                                    "{value:?} is not wrapped in braces: CCG does not invoke a plugin written without them; write \"{{{}}}\"",
                                    bare.to_ascii_uppercase()
                                ),
                            );
                        }
                        plugin = Plugin::from_guid(value);
                        if plugin.is_none() {
                            let known: Vec<String> = Plugin::ALL
                                .iter()
                                .map(|p| format!("{p} {{{}}}", p.guid()))
                                .collect();
                            self.warn(
                                key_path,
                                format!(
                                    "{value:?} is not a CCG plugin kubectl-gmsa knows ({}), so PluginInput is not checked: make sure this plugin is installed on every Windows node",
                                    known.join(", ")
                                ),
                            );
                        }
                    }
                },
                _ if !value.chars().all(|c| c.is_ascii_digit()) => {
                    self.push(key_path, format!("{value:?} is not a version: write \"1\""));
                }
                _ => {}
            }
        }
    }

    /// `PluginInput`, in the format its plugin reads when the plugin is known.
    fn plugin_input(&mut self, host: &Map<String, Value>, path: &str, plugin: Option<Plugin>) {
        if let (Some(Plugin::Aws), Some(Value::Object(object))) =
            (plugin, present(host, "PluginInput"))
        {
            let fix = match plugins::aws_input_from_object(object) {
                Some(input) => format!(
                    "write it as the string {}",
                    serde_json::to_string(&input).unwrap_or_default()
                ),
                None => r#"write it as the string "{\"credentialArn\":\"ARN\"}""#.to_string(),
            };
            self.push(
                path,
                format!(
                    "is a JSON object: the AWS plugin reads its JSON document encoded as a string (on ECS the agent rewrites an object; on Kubernetes nothing does); {fix}"
                ),
            );
            return;
        }
        let Some(input) = self.string(host, "PluginInput", path, "the CCG plugin's input") else {
            return;
        };
        let Some(plugin) = plugin else {
            return;
        };
        match plugin.check_input(input) {
            Ok(None) => {}
            Ok(Some(note)) => self.warn(path, format!("{note} ({plugin} plugin)")),
            Err(e) => self.push(path, format!("{e} ({plugin} plugin)")),
        }
    }
}
