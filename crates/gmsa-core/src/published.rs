//! TEMPORARY (replaced by the keeper branch): the annotation names.
pub const CONTENTS_ANNOTATION: &str = "gmsa.windows.k8s.io/contents";
pub const GENERATION_ANNOTATION: &str = "gmsa.windows.k8s.io/contents-generation";
