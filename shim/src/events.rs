//! Task events the shim publishes to containerd.
//!
//! The service speaks to a [`Publisher`]; the real one, [`Outbox`], forwards
//! to containerd's ttrpc event service, tests use a channel.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_proto::api::ForwardRequest;
use berth_proto::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use berth_proto::protobuf::well_known_types::timestamp::Timestamp;
use berth_proto::protobuf::MessageDyn;
use berth_proto::shim::event::Envelope;
use berth_proto::shim_async::{Client, EventsClient};
use berth_proto::topics;
use berth_proto::ttrpc::{self, context};
use containerd_shim::util::convert_to_any;
use tokio::sync::{mpsc, oneshot};

/// An event about a task, as the shim knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Create(TaskCreate),
    Start(TaskStart),
    Exit(TaskExit),
    Delete(TaskDelete),
    ExecAdded(TaskExecAdded),
    ExecStarted(TaskExecStarted),
    Oom(TaskOOM),
    Paused(TaskPaused),
    Resumed(TaskResumed),
}

impl Event {
    pub fn topic(&self) -> &'static str {
        match self {
            Event::Create(_) => topics::TASK_CREATE_EVENT_TOPIC,
            Event::Start(_) => topics::TASK_START_EVENT_TOPIC,
            Event::Exit(_) => topics::TASK_EXIT_EVENT_TOPIC,
            Event::Delete(_) => topics::TASK_DELETE_EVENT_TOPIC,
            Event::ExecAdded(_) => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Event::ExecStarted(_) => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Event::Oom(_) => topics::TASK_OOM_EVENT_TOPIC,
            Event::Paused(_) => topics::TASK_PAUSED_EVENT_TOPIC,
            Event::Resumed(_) => topics::TASK_RESUMED_EVENT_TOPIC,
        }
    }

    fn into_message(self) -> Box<dyn MessageDyn> {
        match self {
            Event::Create(e) => Box::new(e),
            Event::Start(e) => Box::new(e),
            Event::Exit(e) => Box::new(e),
            Event::Delete(e) => Box::new(e),
            Event::ExecAdded(e) => Box::new(e),
            Event::ExecStarted(e) => Box::new(e),
            Event::Oom(e) => Box::new(e),
            Event::Paused(e) => Box::new(e),
            Event::Resumed(e) => Box::new(e),
        }
    }
}

#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    async fn publish(&self, event: Event);
}

/// Publishes to containerd's ttrpc event service, one event at a time and in
/// the order they were published.
///
/// A transport failure (containerd stopped or restarting) is retried with
/// backoff until containerd takes the event: nothing is dropped after a fixed
/// number of tries, and nothing overtakes an event that is being retried. An
/// event containerd answers with an error is logged and dropped, since
/// sending it again would be refused again. The connection is made lazily,
/// so the shim serves even while containerd is down.
pub struct Outbox {
    tx: mpsc::UnboundedSender<Item>,
    namespace: String,
}

enum Item {
    Event(Envelope),
    Flush(oneshot::Sender<()>),
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl Outbox {
    /// Starts delivering to containerd's ttrpc `address` (a path or a
    /// `unix://` URL).
    pub fn start(address: &str, namespace: &str) -> Self {
        let address = if address.contains("://") {
            address.to_owned()
        } else {
            format!("unix://{address}")
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(deliver(address, rx));
        Outbox {
            tx,
            namespace: namespace.to_owned(),
        }
    }

    /// Waits until everything published so far was delivered, or `timeout`.
    /// Returns whether it was all delivered.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Flush(tx)).is_err() {
            return false;
        }
        tokio::time::timeout(timeout, rx)
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn deliver(address: String, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut client: Option<EventsClient> = None;
    let mut backoff = MIN_BACKOFF;
    while let Some(item) = rx.recv().await {
        let envelope = match item {
            Item::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Item::Event(envelope) => envelope,
        };
        let request = ForwardRequest {
            envelope: Some(envelope).into(),
            ..Default::default()
        };
        loop {
            let events = match &client {
                Some(c) => c,
                None => match Client::connect(&address).await {
                    Ok(c) => client.insert(EventsClient::new(c)),
                    Err(e) => {
                        log::warn!("connect to containerd's events at {address}: {e}; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let ctx = context::with_timeout(FORWARD_TIMEOUT.as_nanos() as i64);
            match events.forward(ctx, &request).await {
                Ok(_) => {
                    backoff = MIN_BACKOFF;
                    break;
                }
                Err(ttrpc::Error::RpcStatus(status)) => {
                    log::error!(
                        "containerd refused event {}: {}",
                        request.envelope.topic,
                        status.message()
                    );
                    break;
                }
                Err(e) => {
                    log::warn!(
                        "publish {}: {e}; retrying in {backoff:?}",
                        request.envelope.topic
                    );
                    client = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[async_trait]
impl Publisher for Outbox {
    async fn publish(&self, event: Event) {
        let topic = event.topic();
        let any = match convert_to_any(event.into_message()) {
            Ok(any) => any,
            Err(e) => {
                log::error!("encode {topic}: {e}");
                return;
            }
        };
        let envelope = Envelope {
            timestamp: Some(timestamp(SystemTime::now())).into(),
            namespace: self.namespace.clone(),
            topic: topic.to_owned(),
            event: Some(any).into(),
            ..Default::default()
        };
        if self.tx.send(Item::Event(envelope)).is_err() {
            log::error!("publish {topic}: the outbox has stopped");
        }
    }
}

#[async_trait]
impl<T: Publisher> Publisher for std::sync::Arc<T> {
    async fn publish(&self, event: Event) {
        (**self).publish(event).await
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
mod tests {
    use std::sync::Arc;

    use berth_proto::api::Empty;
    use berth_proto::shim_async::{create_events, Events};
    use berth_proto::ttrpc::r#async::{Server, TtrpcContext};
    use tokio::sync::mpsc::UnboundedSender;

    use super::*;

    /// containerd's event service, as far as the shim can tell.
    struct Containerd(UnboundedSender<String>);

    #[async_trait]
    impl Events for Containerd {
        async fn forward(&self, _: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
            let _ = self.0.send(req.envelope.topic.clone());
            Ok(Empty::new())
        }
    }

    fn start(id: &str) -> Event {
        Event::Start(TaskStart {
            container_id: id.into(),
            pid: 1,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn events_wait_for_containerd_and_arrive_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock.ttrpc");
        let outbox = Outbox::start(socket.to_str().unwrap(), "k8s.io");
        // containerd is not there yet.
        outbox.publish(Event::Create(TaskCreate::default())).await;
        outbox.publish(start("a")).await;
        outbox.publish(Event::Exit(TaskExit::default())).await;
        assert!(
            !outbox.flush(Duration::from_millis(300)).await,
            "nothing can be delivered yet"
        );

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut server = Server::new()
            .bind(&format!("unix://{}", socket.display()))
            .unwrap()
            .register_service(create_events(Arc::new(Containerd(tx))));
        server.start().await.unwrap();
        assert!(
            outbox.flush(Duration::from_secs(10)).await,
            "delivered once containerd listens"
        );
        let mut topics = Vec::new();
        while let Ok(t) = rx.try_recv() {
            topics.push(t);
        }
        assert_eq!(topics, ["/tasks/create", "/tasks/start", "/tasks/exit"]);
        server.shutdown().await.unwrap();
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
