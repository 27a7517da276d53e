//! The CEL of the admission policies: the webhook's decisions (gmsa-core's `decision.rs`)
//! written as expressions over `object`, `oldObject` and `request`. Generated, because each check repeats for the pod and three container lists.
//!
//! Every step into the pod is an optional (`.?`), so a missing field reads as absent instead of
//! failing the request under `failurePolicy: Fail`.

/// A place in a pod that holds GMSA settings, as the webhook names it in its messages.
#[derive(Debug, Clone, Copy)]
pub struct ListKind {
    /// The pod spec field.
    pub field: &'static str,
    /// How messages call one of them (`gmsa_core::pod::PlaceKind`'s display).
    pub label: &'static str,
}

pub const LISTS: [ListKind; 3] = [
    ListKind {
        field: "containers",
        label: "container",
    },
    ListKind {
        field: "initContainers",
        label: "init container",
    },
    ListKind {
        field: "ephemeralContainers",
        label: "ephemeral container",
    },
];

/// The spec name set on a holder (`object.spec` for the pod, a container), `''` when none.
pub fn name_of(holder: &str) -> String {
    format!("{holder}.?securityContext.?windowsOptions.?gmsaCredentialSpecName.orValue('')")
}

/// The contents set on a holder, as an optional.
pub fn contents_of(holder: &str) -> String {
    format!("{holder}.?securityContext.?windowsOptions.?gmsaCredentialSpec")
}

/// Whether this request creates the pod.
pub const CREATING: &str = "request.operation == 'CREATE'";

/// The containers of `list` this request creates: all of them on CREATE; on the
/// `pods/ephemeralcontainers` subresource, the ephemeral containers the old pod lacks.
pub fn created(list: ListKind) -> String {
    let all = format!("object.spec.?{}.orValue([])", list.field);
    if list.field == "ephemeralContainers" {
        format!(
            "{all}.filter(c, {CREATING} || (request.?subResource.orValue('') == 'ephemeralcontainers' && \
             !oldObject.spec.?ephemeralContainers.orValue([]).exists(o, o.name == c.name)))"
        )
    } else {
        format!("{all}.filter(c, {CREATING})")
    }
}

/// The variable holding [`created`] for `list`.
pub fn created_variable(list: ListKind) -> String {
    format!("variables.{}", list.field)
}

/// Whether a place this request creates names a spec or carries contents: what the uninstall
/// guard refuses. Updates of existing pods create no place (only new ephemeral containers do),
/// so controllers can still adopt, label and finalize the pods that run.
pub fn creates_a_gmsa_place() -> String {
    let mut any = vec![format!("({CREATING} && {})", mentions("object.spec"))];
    for list in LISTS {
        any.push(format!("{}.exists(c, {})", created(list), mentions("c")));
    }
    any.join(" || ")
}

/// The distinct spec names set on the places this request creates (needs the [`created`]
/// variables): each name once, where it first appears (pod, containers, init containers,
/// ephemeral containers), so a pod naming one spec everywhere costs one authorization.
pub fn created_names() -> String {
    let pod = name_of("object.spec");
    let mut parts = vec![format!("({CREATING} && {pod} != '' ? [{pod}] : [])")];
    let mut earlier = vec![format!("({CREATING} && {pod} == {})", name_of("c"))];
    for list in LISTS {
        let list_var = created_variable(list);
        let first = format!(
            "{list_var}.filter(d, {} == {})[0] == c",
            name_of("d"),
            name_of("c")
        );
        parts.push(format!(
            "{list_var}.filter(c, {} != '' && !({}) && {first}).map(c, {})",
            name_of("c"),
            earlier.join(" || "),
            name_of("c")
        ));
        earlier.push(format!(
            "{list_var}.exists(d, {} == {})",
            name_of("d"),
            name_of("c")
        ));
    }
    parts.join(" + ")
}

/// The pod's name as messages quote it (empty while `generateName` is pending).
pub const POD_NAME: &str = "object.metadata.?name.orValue('')";

/// What changed between two holders' settings, as the webhook words it.
fn what_changed(new: &str, old: &str) -> String {
    let name = format!("{} != {}", name_of(new), name_of(old));
    let contents = format!(
        "{}.orValue('') != {}.orValue('')",
        contents_of(new),
        contents_of(old)
    );
    format!("(({name}) && ({contents}) ? 'name and contents' : ({name}) ? 'name' : 'contents')")
}

fn differs(new: &str, old: &str) -> String {
    format!(
        "({} != {} || {}.orValue('') != {}.orValue(''))",
        name_of(new),
        name_of(old),
        contents_of(new),
        contents_of(old)
    )
}

fn mentions(holder: &str) -> String {
    format!(
        "({} != '' || {}.hasValue())",
        name_of(holder),
        contents_of(holder)
    )
}

/// The refusal of a changed GMSA setting on update.
fn unchanged_message(what: &str, kind_label: &str, owner: &str) -> String {
    format!(
        "\"cannot update an existing pod's GMSA settings (GMSA \" + {what} + \" modified on {kind_label} \\\"\" + {owner} + \"\\\")\""
    )
}

/// On UPDATE, the pod-level settings equal the old pod's: `(expression, messageExpression)`.
pub fn pod_unchanged() -> (String, String) {
    (
        format!(
            "request.operation != 'UPDATE' || !{}",
            differs("object.spec", "oldObject.spec")
        ),
        unchanged_message(
            &what_changed("object.spec", "oldObject.spec"),
            "pod",
            POD_NAME,
        ),
    )
}

/// On UPDATE, every container of `list` keeps its settings, matched by name; a container
/// that appears may not bring settings (ephemeral ones are checked as created instead), and
/// one that disappears may not take any away. `(expression, messageExpression)`.
pub fn list_unchanged(list: ListKind) -> (String, String) {
    let new = format!("object.spec.?{}.orValue([])", list.field);
    let old = format!("oldObject.spec.?{}.orValue([])", list.field);
    let changed = format!("{old}.exists(o, o.name == c.name && {})", differs("c", "o"));
    let appeared = if list.field == "ephemeralContainers" {
        "false".to_string()
    } else {
        format!("(!{old}.exists(o, o.name == c.name) && {})", mentions("c"))
    };
    let gone = format!(
        "{old}.filter(o, !{new}.exists(c, c.name == o.name) && {})",
        mentions("o")
    );
    let changed_list = format!("{new}.filter(c, {changed} || {appeared})");
    let expression = format!(
        "request.operation != 'UPDATE' || (size({changed_list}) == 0 && size({gone}) == 0)"
    );
    // The first changed container, compared with its old self when it has one.
    let first = format!("{changed_list}[0]");
    let what_new = format!(
        "({old}.exists(o, o.name == {first}.name) ? {}  : ({} != '' && {}.hasValue() ? 'name and contents' : {} != '' ? 'name' : 'contents'))",
        what_changed_with_old(&first, &old),
        name_of(&first),
        contents_of(&first),
        name_of(&first),
    );
    let gone_first = format!("{gone}[0]");
    let what_gone = format!(
        "({} != '' && {}.hasValue() ? 'name and contents' : {} != '' ? 'name' : 'contents')",
        name_of(&gone_first),
        contents_of(&gone_first),
        name_of(&gone_first)
    );
    let message = format!(
        "size({changed_list}) > 0 ? {} : {}",
        unchanged_message(&what_new, list.label, &format!("{first}.name")),
        unchanged_message(&what_gone, list.label, &format!("{gone_first}.name"))
    );
    (expression, message)
}

/// [`what_changed`] between `new` and the container of the same name in `old_list`.
fn what_changed_with_old(new: &str, old_list: &str) -> String {
    let old = format!("{old_list}.filter(o, o.name == {new}.name)[0]");
    what_changed(new, &old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_looks_at_created_places_only() {
        let guard = creates_a_gmsa_place();
        assert!(guard.starts_with(&format!("({CREATING} && ")));
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            assert!(
                guard.contains(&format!("object.spec.?{list}.orValue([])")),
                "{list}"
            );
        }
        assert!(guard.contains("gmsaCredentialSpecName.orValue('') != ''"));
        assert!(guard.contains("gmsaCredentialSpec.hasValue()"));
        assert!(
            !guard.contains("oldObject.spec.?containers"),
            "updates create no container"
        );
    }
}
