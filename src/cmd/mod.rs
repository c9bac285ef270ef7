//! One module per subcommand; `conf` loads the Hadoop-style configuration they share.

pub mod cluster;
pub mod conf;
pub mod datanode;
pub mod dfs;
pub mod dfsadmin;
pub mod namenode;
