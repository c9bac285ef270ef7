//! Replica placement as HDFS's BlockPlacementPolicyDefault: the first replica on the
//! writer's node when the writer is a datanode (else a random node), the second on
//! another rack, the third on the second's rack, the rest anywhere; never two replicas
//! on one node; excluded nodes are never chosen; favored nodes come first.
//! Also orders replica locations for readers (local, same rack, then others).

use std::collections::HashSet;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::datanodes::DatanodeManager;

#[derive(Debug, Clone, Default)]
pub struct PlacementRequest {
    /// How many new targets to choose.
    pub wanted: usize,
    /// The writer's datanode, when the writer runs on one and local writes are allowed.
    pub writer: Option<u32>,
    /// Nodes already holding (or writing) the block; they count for rack spreading.
    pub chosen: Vec<u32>,
    pub excluded: HashSet<u32>,
    pub favored: Vec<u32>,
    pub blocksize: u64,
}

/// Picks up to `request.wanted` distinct new target nodes.
pub fn choose_targets(dns: &DatanodeManager, request: &PlacementRequest, rng: &mut impl Rng) -> Vec<u32> {
    let mut all: Vec<u32> = request.chosen.clone();
    let mut new = Vec::new();
    let usable = |index: u32, all: &[u32]| -> bool {
        dns.get(index).is_some_and(|n| n.registered && n.has_room_for(request.blocksize))
            && !request.excluded.contains(&index)
            && !all.contains(&index)
    };
    for favored in &request.favored {
        if new.len() < request.wanted && usable(*favored, &all) {
            all.push(*favored);
            new.push(*favored);
        }
    }
    while new.len() < request.wanted {
        let rack_of = |index: u32| dns.node(index).rack.as_str();
        let candidates: Vec<u32> = dns.live().map(|n| n.index).filter(|i| usable(*i, &all)).collect();
        if candidates.is_empty() {
            break;
        }
        let pick_where = |pred: &dyn Fn(u32) -> bool, rng: &mut dyn rand::RngCore| -> Option<u32> {
            let matching: Vec<u32> = candidates.iter().copied().filter(|c| pred(*c)).collect();
            matching.choose(rng).copied()
        };
        let pick = match all.len() {
            0 => match request.writer.filter(|w| usable(*w, &all)) {
                Some(writer) => Some(writer),
                None => pick_where(&|_| true, rng),
            },
            1 => {
                let first_rack = rack_of(all[0]);
                pick_where(&|c| rack_of(c) != first_rack, rng)
            }
            2 => {
                let (rack0, rack1) = (rack_of(all[0]), rack_of(all[1]));
                if rack0 == rack1 {
                    pick_where(&|c| rack_of(c) != rack0, rng)
                } else {
                    pick_where(&|c| rack_of(c) == rack1, rng)
                }
            }
            _ => None,
        };
        let pick = pick.or_else(|| candidates.choose(rng).copied());
        match pick {
            Some(index) => {
                all.push(index);
                new.push(index);
            }
            None => break,
        }
    }
    new
}

/// Orders replica nodes for a reader at `client_node`/`client_rack`: the reader's own
/// node, then its rack, then the rest, shuffled within each distance as HDFS does.
pub fn sort_for_reader(
    dns: &DatanodeManager,
    nodes: &mut [u32],
    client_node: Option<u32>,
    client_rack: Option<&str>,
    rng: &mut impl Rng,
) {
    nodes.shuffle(rng);
    nodes.sort_by_key(|n| {
        if Some(*n) == client_node {
            0
        } else if client_rack.is_some_and(|r| dns.node(*n).rack == r) {
            1
        } else {
            2
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datanodes::DatanodeManager;
    use ringfs_common::proto::hdfs::datanode::DatanodeRegistrationProto;
    use ringfs_common::proto::hdfs::{
        BlockKeyProto, DatanodeIdProto, ExportedBlockKeysProto, StorageInfoProto,
    };
    use std::time::Instant;

    fn registration(uuid: &str, ip: &str) -> DatanodeRegistrationProto {
        DatanodeRegistrationProto {
            datanode_id: DatanodeIdProto {
                ip_addr: ip.into(),
                host_name: ip.into(),
                datanode_uuid: uuid.into(),
                xfer_port: 9866,
                info_port: 0,
                ipc_port: 0,
                info_secure_port: None,
            },
            storage_info: StorageInfoProto::default(),
            keys: ExportedBlockKeysProto {
                is_block_token_enabled: false,
                key_update_interval: 0,
                token_life_time: 0,
                current_key: BlockKeyProto::default(),
                all_keys: vec![],
            },
            software_version: "x".into(),
        }
    }

    fn cluster(racks: &[(&str, &str)]) -> DatanodeManager {
        let mut dns = DatanodeManager::default();
        for (i, (ip, rack)) in racks.iter().enumerate() {
            dns.register(registration(&format!("dn{i}"), ip), rack.to_string(), Instant::now(), 0);
        }
        dns
    }

    #[test]
    fn default_policy_spreads_racks() {
        let dns = cluster(&[
            ("10.0.0.1", "/r1"),
            ("10.0.0.2", "/r1"),
            ("10.0.1.1", "/r2"),
            ("10.0.1.2", "/r2"),
            ("10.0.2.1", "/r3"),
            ("10.0.2.2", "/r3"),
        ]);
        let mut rng = rand::rng();
        for _ in 0..200 {
            let request = PlacementRequest { wanted: 3, writer: Some(0), blocksize: 1, ..Default::default() };
            let targets = choose_targets(&dns, &request, &mut rng);
            assert_eq!(targets.len(), 3);
            assert_eq!(targets[0], 0, "writer-local first");
            let racks: Vec<&str> = targets.iter().map(|t| dns.node(*t).rack.as_str()).collect();
            assert_ne!(racks[1], racks[0], "second replica off the writer's rack");
            assert_eq!(racks[2], racks[1], "third replica on the second's rack");
            let distinct: HashSet<u32> = targets.iter().copied().collect();
            assert_eq!(distinct.len(), 3);
        }
    }

    #[test]
    fn exclusions_favored_and_shortage() {
        let dns = cluster(&[("10.0.0.1", "/r"), ("10.0.0.2", "/r"), ("10.0.0.3", "/r")]);
        let mut rng = rand::rng();
        let request = PlacementRequest {
            wanted: 3,
            excluded: [1].into_iter().collect(),
            favored: vec![2],
            blocksize: 1,
            ..Default::default()
        };
        let targets = choose_targets(&dns, &request, &mut rng);
        assert_eq!(targets, vec![2, 0], "favored first, excluded never, fewer when short");
        let request = PlacementRequest { wanted: 2, chosen: vec![0], blocksize: 1, ..Default::default() };
        let targets = choose_targets(&dns, &request, &mut rng);
        assert_eq!(targets.len(), 2);
        assert!(!targets.contains(&0));

        let mut nodes = vec![0, 1, 2];
        sort_for_reader(&dns, &mut nodes, Some(2), Some("/r"), &mut rng);
        assert_eq!(nodes[0], 2);
    }
}
