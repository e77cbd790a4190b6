//! Prints how long each server of the local stack takes to start and become ready:
//! `cargo run -p pulse-testkit --example start_times`.

use std::time::Instant;

use pulse_testkit::{Backend, FerretDb, KubeOptions, KubeStack, RedisCluster, RedisServer};

#[tokio::main]
async fn main() -> Result<(), pulse_testkit::Error> {
    let timed =
        |label: &str, started: Instant| println!("{label:<48} {:>6.2} s", started.elapsed().as_secs_f64());
    let t = Instant::now();
    let redis = RedisServer::start().await?;
    timed("redis-server", t);
    let t = Instant::now();
    let cluster = RedisCluster::start().await?;
    timed("redis cluster (3 nodes, slots assigned, ok)", t);
    let t = Instant::now();
    let ferret = FerretDb::start_on(Backend::Sqlite).await?;
    timed("ferretdb (sqlite)", t);
    let t = Instant::now();
    let ferret_pg = FerretDb::start_on(Backend::Postgresql).await?;
    timed("ferretdb (postgresql: initdb, postgres, ferretdb)", t);
    let t = Instant::now();
    let api = KubeStack::start(KubeOptions::api_only()).await?;
    timed("etcd + kube-apiserver (/readyz)", t);
    let t = Instant::now();
    let full = KubeStack::start(KubeOptions::full()).await?;
    timed("etcd + apiserver + controllers + scheduler + kwok", t);
    drop((redis, cluster, ferret, ferret_pg, api, full));
    Ok(())
}
