//! `credspec new --plugin`: the typed flags of a known CCG plugin made into the `PluginInput`
//! it reads (formats and their sources in `gmsa_core::credspec::plugins`), or the generic
//! `--ccg-plugin-guid`/`--ccg-plugin-input` pair as given.

use anyhow::{anyhow, bail};
use gmsa_core::credspec::plugins::{self, InputError, Plugin};
use gmsa_core::credspec::CcgPlugin;

use crate::cli::{CcgArgs, PluginChoice};

/// The PortableCcgVersion every plugin's documentation shows.
const DEFAULT_CCG_VERSION: &str = "1";

/// The plugin the flags describe, if any; a malformed value is named by its flag.
pub(super) fn from_flags(args: &CcgArgs) -> anyhow::Result<Option<CcgPlugin>> {
    if args.ccg_version.is_some() && args.plugin.is_none() && args.ccg_plugin_guid.is_none() {
        bail!("--ccg-version is the PortableCcgVersion of a CCG plugin, and no plugin is given: add --plugin aws|azure|rancher with its flags (or --ccg-plugin-guid and --ccg-plugin-input), or leave --ccg-version out");
    }
    let version = args
        .ccg_version
        .clone()
        .unwrap_or_else(|| DEFAULT_CCG_VERSION.to_string());
    let flag = |name: &'static str, e: InputError| anyhow!("{name}: {e}");
    let given = |value: &Option<String>| value.clone().unwrap_or_default();
    let (plugin, input) = match args.plugin {
        None => {
            return Ok(args
                .ccg_plugin_guid
                .as_ref()
                .zip(args.ccg_plugin_input.as_ref())
                .map(|(guid, input)| CcgPlugin {
                    guid: guid.clone(),
                    input: input.clone(),
                    version: version.clone(),
                }))
        }
        Some(PluginChoice::Aws) => (
            Plugin::Aws,
            plugins::aws_input(&given(&args.credential_arn))
                .map_err(|e| flag("--credential-arn", e))?,
        ),
        Some(PluginChoice::Azure) => {
            let secret_uri = given(&args.secret_uri);
            let input =
                plugins::azure_input(&given(&args.object_id), &secret_uri).map_err(|e| {
                    let name = if matches!(e, InputError::ObjectId(_)) {
                        "--object-id"
                    } else {
                        "--secret-uri"
                    };
                    flag(name, e)
                })?;
            (Plugin::Azure, input)
        }
        Some(PluginChoice::Rancher) => {
            let input =
                plugins::rancher_input(&given(&args.secret_namespace), &given(&args.secret))
                    .map_err(|e| {
                        let name = if matches!(e, InputError::RancherSecret { .. }) {
                            "--secret"
                        } else {
                            "--secret-namespace"
                        };
                        flag(name, e)
                    })?;
            (Plugin::Rancher, input)
        }
    };
    Ok(Some(CcgPlugin {
        guid: plugin.guid().to_string(),
        input,
        version,
    }))
}
