//! Which Ingresses are ours, exactly as Kubernetes defines it: `spec.ingressClassName` names an
//! IngressClass whose `spec.controller` is our controller name; or the Ingress names no class at all
//! and one of our IngressClasses is marked as the cluster default; or the legacy annotation
//! `kubernetes.io/ingress.class` equals our `--ingress-class`.

use portier_core::{Diagnostic, Diagnostics, FieldPath};
use portier_model::slim::Ingress;
use portier_model::Resource;

use crate::index::Index;
use crate::Options;

pub(crate) const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub(crate) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Our Ingresses, oldest first (creationTimestamp; objects without one, as in files, count as
/// equally old), then by namespace/name: the order in which conflicts are decided.
pub(crate) fn select<'m>(ix: &Index<'m>, opts: &Options, diags: &mut Diagnostics) -> Vec<(&'m Resource, &'m Ingress)> {
    let is_ours = |class: &str| {
        ix.classes
            .get(class)
            .is_some_and(|(_, c)| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(&opts.controller_name))
    };
    let mut defaults: Vec<&str> = ix
        .classes
        .iter()
        .filter(|(name, (r, _))| is_ours(name) && r.annotation(DEFAULT_CLASS_ANNOTATION) == Some("true"))
        .map(|(name, _)| *name)
        .collect();
    defaults.sort_unstable();

    let mut ours: Vec<(&Resource, &Ingress)> = Vec::new();
    for &(r, ing) in &ix.ingresses {
        let class_name = ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref());
        let legacy = r.annotation(LEGACY_CLASS_ANNOTATION);
        let selected = match (class_name, legacy) {
            (_, Some(l)) if l == opts.ingress_class => true,
            (Some(c), _) => {
                if !ix.classes.contains_key(c) {
                    let field = FieldPath::new("spec.ingressClassName");
                    diags.push(
                        Diagnostic::warning(format!("IngressClass {c} not found; this Ingress is not served"))
                            .object(r.id.clone())
                            .span(r.origin.span(&field))
                            .field(field)
                            .help(format!(
                                "create an IngressClass {c} with spec.controller: {}, or set spec.ingressClassName to one that has it",
                                opts.controller_name
                            )),
                    );
                }
                is_ours(c)
            }
            (None, Some(_)) => false,
            (None, None) => {
                if defaults.is_empty() {
                    diags.push(
                        Diagnostic::warning("no ingressClassName, and none of our IngressClasses is the default; this Ingress is not served")
                            .object(r.id.clone())
                            .span(r.origin.span(&FieldPath::root()))
                            .help(format!(
                                "set spec.ingressClassName to an IngressClass with spec.controller: {}, or annotate that IngressClass with {DEFAULT_CLASS_ANNOTATION}: \"true\"",
                                opts.controller_name
                            )),
                    );
                }
                !defaults.is_empty()
            }
        };
        if selected {
            ours.push((r, ing));
        } else {
            tracing::debug!(ingress = %r.id, "ingress belongs to another class, skipped");
        }
    }
    ours.sort_by(|(a, _), (b, _)| {
        let ta = a.creation_timestamp();
        let tb = b.creation_timestamp();
        // `None` sorts before `Some`: objects from files have no timestamp and are all equally old.
        ta.cmp(&tb).then_with(|| a.id.cmp(&b.id))
    });
    ours
}
