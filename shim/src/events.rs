//! Task events the shim publishes to containerd.
//!
//! The service speaks to a [`Publisher`]; the real one forwards to
//! containerd's ttrpc event service, tests use a channel.

use std::time::SystemTime;

use async_trait::async_trait;
use berth_proto::events::task::{TaskCreate, TaskDelete, TaskExit, TaskStart};
use berth_proto::protobuf::well_known_types::timestamp::Timestamp;
use berth_proto::protobuf::MessageDyn;
use berth_proto::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

/// An event about a task, as the shim knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Create(TaskCreate),
    Start(TaskStart),
    Exit(TaskExit),
    Delete(TaskDelete),
}

impl Event {
    pub fn topic(&self) -> &'static str {
        match self {
            Event::Create(_) => topics::TASK_CREATE_EVENT_TOPIC,
            Event::Start(_) => topics::TASK_START_EVENT_TOPIC,
            Event::Exit(_) => topics::TASK_EXIT_EVENT_TOPIC,
            Event::Delete(_) => topics::TASK_DELETE_EVENT_TOPIC,
        }
    }

    fn into_message(self) -> Box<dyn MessageDyn> {
        match self {
            Event::Create(e) => Box::new(e),
            Event::Start(e) => Box::new(e),
            Event::Exit(e) => Box::new(e),
            Event::Delete(e) => Box::new(e),
        }
    }
}

#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    async fn publish(&self, event: Event);
}

/// Publishes to containerd over its ttrpc address.
pub struct Remote {
    publisher: RemotePublisher,
    namespace: String,
}

impl Remote {
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        Remote {
            publisher,
            namespace: namespace.to_owned(),
        }
    }
}

#[async_trait]
impl Publisher for Remote {
    async fn publish(&self, event: Event) {
        let topic = event.topic();
        if let Err(e) = self
            .publisher
            .publish(
                Context::default(),
                topic,
                &self.namespace,
                event.into_message(),
            )
            .await
        {
            log::error!("publish {topic}: {e}");
        }
    }
}

/// A protobuf timestamp for `t`.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

#[cfg(test)]
pub mod testing {
    use super::*;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

    /// A publisher that hands events to a channel.
    pub struct Channel(pub UnboundedSender<Event>);

    impl Channel {
        pub fn new() -> (Self, UnboundedReceiver<Event>) {
            let (tx, rx) = unbounded_channel();
            (Channel(tx), rx)
        }
    }

    #[async_trait]
    impl Publisher for Channel {
        async fn publish(&self, event: Event) {
            let _ = self.0.send(event);
        }
    }
}
