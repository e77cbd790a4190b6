//! Apply: server-side apply of every child with one field manager, forced, and the sweep
//! of children no longer wanted (found by the pipeline's label, owned by its uid).

use std::collections::BTreeSet;

use futures::future::try_join_all;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};

use crate::context::MANAGER;
use crate::error::Error;
use crate::pipeline::build::{Capabilities, Child, ChildKind, MANAGED_BY, MANAGED_BY_LABEL, PIPELINE_LABEL};

/// Applies `children` in `namespace`, all at once, and returns them as the server has them
/// (with their status).
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    children: &[Child],
) -> Result<Vec<(ChildKind, DynamicObject)>, Error> {
    let params = PatchParams::apply(MANAGER).force();
    try_join_all(children.iter().map(|child| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &child.kind.api_resource());
        let params = params.clone();
        async move {
            let applied = api
                .patch(&child.name, &params, &Patch::Apply(&child.object))
                .await
                .map_err(Error::kube(format!("applying {} {}", child.kind.kind(), child.name)))?;
            Ok::<_, Error>((child.kind, applied))
        }
    }))
    .await
}

/// The wanted children as one string, to remember that a sweep was done for them.
pub fn fingerprint(children: &[Child]) -> String {
    let set: BTreeSet<String> = children.iter().map(|c| format!("{}/{}", c.kind.kind(), c.name)).collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

/// Deletes the pipeline's children that are not in `wanted`; returns what it deleted.
pub async fn sweep(
    client: &kube::Client,
    namespace: &str,
    pipeline: &str,
    uid: &str,
    wanted: &[Child],
    capabilities: Capabilities,
) -> Result<Vec<String>, Error> {
    let selector = format!("{PIPELINE_LABEL}={pipeline},{MANAGED_BY_LABEL}={MANAGED_BY}");
    let wanted: BTreeSet<(ChildKind, &str)> = wanted.iter().map(|c| (c.kind, c.name.as_str())).collect();
    let kinds = ChildKind::ALL.into_iter().filter(|k| k.is_available(capabilities));
    let deleted = try_join_all(kinds.map(|kind| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
        let (selector, wanted) = (&selector, &wanted);
        async move {
            let list = api
                .list_metadata(&ListParams::default().labels(selector))
                .await
                .map_err(Error::kube(format!("listing {}s", kind.kind())))?;
            let mut deleted = Vec::new();
            for object in list.items {
                let name = object.metadata.name.clone().unwrap_or_default();
                let owned = object.metadata.owner_references.iter().flatten().any(|o| o.uid == uid);
                if !owned || wanted.contains(&(kind, name.as_str())) {
                    continue;
                }
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => deleted.push(format!("{} {name}", kind.kind())),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(Error::kube(format!("deleting {} {name}", kind.kind()))(e)),
                }
            }
            Ok(deleted)
        }
    }))
    .await?;
    Ok(deleted.into_iter().flatten().collect())
}
