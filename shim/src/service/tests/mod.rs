//! The Task service against a stub backend and a channel publisher: no root.
//!
//! This file holds the fixture (the stub is `super::stub`); the tests are grouped by what
//! they exercise: a task's life, exec processes, exits, freezing.

mod exec;
mod exit;
mod freeze;
mod lifecycle;
mod sandbox;

use berth_proto::api::*;
use berth_proto::ttrpc::Code;
use berth_sandbox::cgroup::freezer::FreezerState;
use berth_sandbox::journal::Record;
use tokio::sync::mpsc::UnboundedReceiver;

use super::stub::Stub;
use super::*;
use crate::events::testing::Channel;
use crate::events::Event;

struct Fixture {
    inner: Arc<Inner<Arc<Stub>, Channel>>,
    stub: Arc<Stub>,
    events: UnboundedReceiver<Event>,
    shutdown: Arc<Notify>,
}

fn fixture() -> Fixture {
    let reaper = Reaper::new();
    let stub = Stub::new(&reaper);
    let (publisher, events) = Channel::new();
    let shutdown = Arc::new(Notify::new());
    let service = Service::new(Arc::clone(&stub), publisher, reaper, Arc::clone(&shutdown));
    Fixture {
        inner: service.inner,
        stub,
        events,
        shutdown,
    }
}

fn create_req(id: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        id: id.into(),
        bundle: format!("/bundles/{id}"),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> Code {
    match ttrpc::Error::from(r.expect_err("expected an error")) {
        ttrpc::Error::RpcStatus(s) => s.code(),
        other => panic!("{other:?}"),
    }
}

fn id_req<T: Default>(id: &str, set: impl FnOnce(&mut T, String)) -> T {
    let mut r = T::default();
    set(&mut r, id.to_owned());
    r
}

fn kill_req(id: &str, signal: u32) -> KillRequest {
    KillRequest {
        id: id.into(),
        signal,
        ..Default::default()
    }
}

async fn next_event(events: &mut UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
        .await
        .expect("an event in time")
        .expect("publisher alive")
}

/// Creates and starts task `id`, and takes its TaskCreate and TaskStart.
async fn create_and_start(f: &mut Fixture, id: &str) {
    f.inner.create(create_req(id)).await.unwrap();
    f.inner
        .start(id_req(id, |r: &mut StartRequest, id| r.id = id))
        .await
        .unwrap();
    assert!(matches!(next_event(&mut f.events).await, Event::Create(_)));
    assert!(matches!(next_event(&mut f.events).await, Event::Start(_)));
}

fn exec_req(id: &str, exec_id: &str) -> ExecProcessRequest {
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        spec: Some(berth_proto::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: br#"{"args":["true"],"cwd":"/"}"#.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}
