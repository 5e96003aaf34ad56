//! Sets of voxel indices and their 26-connected components, shared by the steps that re-split cement after
//! the cement stage (`escape`, `resplit`).

use std::collections::HashSet;

/// The up to 26 neighbours of `v` that have no negative index (the caller bounds the high side).
pub(crate) fn neighbours26(v: [usize; 3]) -> impl Iterator<Item = [usize; 3]> {
    (0..27).filter(|&k| k != 13).filter_map(move |k| {
        let d = [k / 9, (k / 3) % 3, k % 3];
        let mut out = [0usize; 3];
        for a in 0..3 {
            out[a] = (v[a] + d[a]).checked_sub(1)?;
        }
        Some(out)
    })
}

/// The 26-connected components of `set`, ordered by their smallest voxel; each lists its voxels in
/// breadth-first order from that voxel. The order is fixed so that results do not depend on hashing.
pub(crate) fn components26(set: &HashSet<[usize; 3]>) -> Vec<Vec<[usize; 3]>> {
    let mut starts: Vec<[usize; 3]> = set.iter().copied().collect();
    starts.sort_unstable();
    let mut seen = HashSet::with_capacity(set.len());
    let mut out = Vec::new();
    for start in starts {
        if !seen.insert(start) {
            continue;
        }
        let mut comp = vec![start];
        let mut i = 0;
        while i < comp.len() {
            let v = comp[i];
            i += 1;
            for d in neighbours26(v) {
                if set.contains(&d) && seen.insert(d) {
                    comp.push(d);
                }
            }
        }
        out.push(comp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_voxels_join_and_gaps_split() {
        let set: HashSet<[usize; 3]> = [[0, 0, 0], [1, 1, 1], [3, 3, 3], [0, 5, 0]].into_iter().collect();
        let comps = components26(&set);
        assert_eq!(comps, vec![vec![[0, 0, 0], [1, 1, 1]], vec![[0, 5, 0]], vec![[3, 3, 3]]]);
        assert_eq!(neighbours26([0, 0, 0]).count(), 7);
        assert_eq!(neighbours26([1, 1, 1]).count(), 26);
    }
}
