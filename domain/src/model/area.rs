use std::collections::{HashMap, HashSet};

use crate::ids::{AreaId, TenantId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    pub id: AreaId,
    pub tenant_id: TenantId,
    pub parent_id: Option<AreaId>,
    pub name: String,
}

/// A tenant's areas as a tree, for subtree and ancestor questions.
#[derive(Debug, Clone, Default)]
pub struct AreaTree {
    parent: HashMap<AreaId, Option<AreaId>>,
    children: HashMap<AreaId, Vec<AreaId>>,
}

impl AreaTree {
    pub fn new(areas: &[Area]) -> Self {
        let mut tree = AreaTree::default();
        for area in areas {
            tree.parent.insert(area.id, area.parent_id);
            if let Some(parent) = area.parent_id {
                tree.children.entry(parent).or_default().push(area.id);
            }
        }
        tree
    }

    /// Every area of the tree, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = AreaId> + '_ {
        self.parent.keys().copied()
    }

    pub fn contains(&self, id: AreaId) -> bool {
        self.parent.contains_key(&id)
    }

    /// `id` and all its ancestors, nearest first. Stops on cycles.
    pub fn path(&self, id: AreaId) -> Vec<AreaId> {
        let mut path = Vec::new();
        let mut current = Some(id);
        while let Some(area) = current {
            if path.contains(&area) || !self.contains(area) {
                break;
            }
            path.push(area);
            current = self.parent.get(&area).copied().flatten();
        }
        path
    }

    /// The given areas and every area below them.
    pub fn subtree(&self, roots: &[AreaId]) -> HashSet<AreaId> {
        let mut seen = HashSet::new();
        let mut stack: Vec<AreaId> = roots
            .iter()
            .copied()
            .filter(|a| self.contains(*a))
            .collect();
        while let Some(area) = stack.pop() {
            if seen.insert(area) {
                if let Some(children) = self.children.get(&area) {
                    stack.extend(children.iter().copied());
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_and_path_follow_parents() {
        let tenant = TenantId::new();
        let root = Area {
            id: AreaId::new(),
            tenant_id: tenant,
            parent_id: None,
            name: "site".into(),
        };
        let child = Area {
            id: AreaId::new(),
            tenant_id: tenant,
            parent_id: Some(root.id),
            name: "b".into(),
        };
        let other = Area {
            id: AreaId::new(),
            tenant_id: tenant,
            parent_id: None,
            name: "o".into(),
        };
        let tree = AreaTree::new(&[root.clone(), child.clone(), other.clone()]);
        assert_eq!(tree.path(child.id), vec![child.id, root.id]);
        let sub = tree.subtree(&[root.id]);
        assert!(sub.contains(&child.id) && sub.contains(&root.id) && !sub.contains(&other.id));
    }
}
