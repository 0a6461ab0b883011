//! Task events the shim publishes to containerd.
//!
//! The service speaks to a [`Publisher`]; the real one, [`Outbox`], forwards
//! to containerd's ttrpc event service, tests use a channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use berth_proto::api::ForwardRequest;
use berth_proto::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use berth_proto::protobuf::well_known_types::any::Any;
use berth_proto::protobuf::well_known_types::timestamp::Timestamp;
use berth_proto::protobuf::Message;
use berth_proto::shim::event::Envelope;
use berth_proto::shim_async::{Client, EventsClient};
use berth_proto::topics;
use berth_proto::ttrpc::{self, context};
use tokio::sync::{mpsc, oneshot};

/// The protobuf package of containerd's task events.
const EVENTS_PACKAGE: &str = "containerd.events";

/// Packs `message` as an `Any` whose type is `<package>.<message name>`,
/// which is how containerd names its types. The name is spelled out rather
/// than read from the message's descriptor: that would build protobuf's
/// reflection tables for the whole file, in every shim, for one string.
pub fn pack<M: Message>(message: &M, package: &str) -> berth_proto::protobuf::Result<Any> {
    Ok(Any {
        type_url: format!("{package}.{}", M::NAME),
        value: message.write_to_bytes()?,
        ..Default::default()
    })
}

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

    /// The task the event is about.
    pub fn container_id(&self) -> &str {
        match self {
            Event::Create(e) => &e.container_id,
            Event::Start(e) => &e.container_id,
            Event::Exit(e) => &e.container_id,
            Event::Delete(e) => &e.container_id,
            Event::ExecAdded(e) => &e.container_id,
            Event::ExecStarted(e) => &e.container_id,
            Event::Oom(e) => &e.container_id,
            Event::Paused(e) => &e.container_id,
            Event::Resumed(e) => &e.container_id,
        }
    }

    /// The event as the `Any` containerd's envelope carries.
    fn to_any(&self) -> berth_proto::protobuf::Result<Any> {
        match self {
            Event::Create(e) => pack(e, EVENTS_PACKAGE),
            Event::Start(e) => pack(e, EVENTS_PACKAGE),
            Event::Exit(e) => pack(e, EVENTS_PACKAGE),
            Event::Delete(e) => pack(e, EVENTS_PACKAGE),
            Event::ExecAdded(e) => pack(e, EVENTS_PACKAGE),
            Event::ExecStarted(e) => pack(e, EVENTS_PACKAGE),
            Event::Oom(e) => pack(e, EVENTS_PACKAGE),
            Event::Paused(e) => pack(e, EVENTS_PACKAGE),
            Event::Resumed(e) => pack(e, EVENTS_PACKAGE),
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
///
/// The queue is bounded at [`CAPACITY`] events. Past it, events other than
/// TaskExit are dropped, each with an error in the log; exits are always
/// queued (there are no more of them than processes), and the exit journal
/// keeps them besides. Events that waited out an outage are logged when
/// containerd takes them.
pub struct Outbox {
    tx: mpsc::UnboundedSender<Item>,
    namespace: String,
    /// Events queued and not yet delivered.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

enum Item {
    Event(Queued),
    Flush(oneshot::Sender<()>),
}

struct Queued {
    envelope: Envelope,
    /// What the event is, for the log: its topic and task.
    what: String,
    at: Instant,
}

/// How many undelivered events the outbox holds before it drops any.
pub const CAPACITY: usize = 10_000;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl Outbox {
    /// Starts delivering to containerd's ttrpc `address` (a path or a
    /// `unix://` URL).
    pub fn start(address: &str, namespace: &str) -> Self {
        Outbox::with_capacity(address, namespace, CAPACITY)
    }

    fn with_capacity(address: &str, namespace: &str, capacity: usize) -> Self {
        let address = if address.contains("://") {
            address.to_owned()
        } else {
            format!("unix://{address}")
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(deliver(address, rx, Arc::clone(&queued)));
        Outbox {
            tx,
            namespace: namespace.to_owned(),
            queued,
            capacity,
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

async fn deliver(address: String, mut rx: mpsc::UnboundedReceiver<Item>, queued: Arc<AtomicUsize>) {
    let mut client: Option<EventsClient> = None;
    let mut backoff = MIN_BACKOFF;
    // When containerd last became reachable again after an outage: events
    // queued before then waited it out.
    let mut back_at: Option<Instant> = None;
    while let Some(item) = rx.recv().await {
        let queued_event = match item {
            Item::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Item::Event(queued_event) => queued_event,
        };
        let Queued { envelope, what, at } = queued_event;
        let request = ForwardRequest {
            envelope: Some(envelope).into(),
            ..Default::default()
        };
        let mut down_since: Option<Instant> = None;
        loop {
            let events = match &client {
                Some(c) => c,
                None => match Client::connect(&address).await {
                    Ok(c) => client.insert(EventsClient::new(c)),
                    Err(e) => {
                        down_since.get_or_insert_with(Instant::now);
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
                    if let Some(since) = down_since {
                        log::info!(
                            "containerd takes events again after {:?}; {} queued",
                            since.elapsed(),
                            queued.load(Ordering::SeqCst)
                        );
                        back_at = Some(Instant::now());
                    }
                    if back_at.is_some_and(|back| at < back) {
                        log::info!("delivered held event {what}, queued {:?} ago", at.elapsed());
                    }
                    break;
                }
                Err(ttrpc::Error::RpcStatus(status)) => {
                    log::error!("containerd refused event {what}: {}", status.message());
                    break;
                }
                Err(e) => {
                    down_since.get_or_insert_with(Instant::now);
                    log::warn!("publish {what}: {e}; retrying in {backoff:?}");
                    client = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        queued.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Publisher for Outbox {
    async fn publish(&self, event: Event) {
        let topic = event.topic();
        let what = format!("{topic} of {}", event.container_id());
        let exit = matches!(event, Event::Exit(_));
        if !exit && self.queued.load(Ordering::SeqCst) >= self.capacity {
            log::error!(
                "event outbox full ({} events wait for containerd): dropped {what}",
                self.capacity
            );
            return;
        }
        let any = match event.to_any() {
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
        self.queued.fetch_add(1, Ordering::SeqCst);
        let queued = Queued {
            envelope,
            what,
            at: Instant::now(),
        };
        if self.tx.send(Item::Event(queued)).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
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
    use berth_proto::protobuf::MessageFull;
    use berth_proto::shim_async::{create_events, Events};
    use berth_proto::ttrpc::r#async::{Server, TtrpcContext};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

    use super::*;

    /// `pack` names a message as its descriptor does.
    fn assert_named_by_descriptor<M: MessageFull>(message: M) {
        let any = pack(&message, EVENTS_PACKAGE).unwrap();
        assert_eq!(any.type_url, M::descriptor().full_name());
        assert_eq!(any.value, message.write_to_bytes().unwrap());
    }

    #[test]
    fn events_are_packed_under_their_descriptors_names() {
        assert_named_by_descriptor(TaskCreate::default());
        assert_named_by_descriptor(TaskStart::default());
        assert_named_by_descriptor(TaskDelete::default());
        assert_named_by_descriptor(TaskExecAdded::default());
        assert_named_by_descriptor(TaskExecStarted::default());
        assert_named_by_descriptor(TaskOOM::default());
        assert_named_by_descriptor(TaskPaused::default());
        assert_named_by_descriptor(TaskResumed::default());
        let exit = TaskExit {
            container_id: "c".into(),
            exit_status: 42,
            ..Default::default()
        };
        assert_named_by_descriptor(exit.clone());
        let any = Event::Exit(exit.clone()).to_any().unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        assert_eq!(TaskExit::parse_from_bytes(&any.value).unwrap(), exit);
    }

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

    /// Serves containerd's event service on `socket`; the topics it is
    /// forwarded arrive on the receiver.
    async fn containerd(socket: &std::path::Path) -> (Server, UnboundedReceiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut server = Server::new()
            .bind(&format!("unix://{}", socket.display()))
            .unwrap()
            .register_service(create_events(Arc::new(Containerd(tx))));
        server.start().await.unwrap();
        (server, rx)
    }

    fn received(rx: &mut UnboundedReceiver<String>) -> Vec<String> {
        let mut topics = Vec::new();
        while let Ok(t) = rx.try_recv() {
            topics.push(t);
        }
        topics
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

        let (mut server, mut rx) = containerd(&socket).await;
        assert!(
            outbox.flush(Duration::from_secs(10)).await,
            "delivered once containerd listens"
        );
        assert_eq!(
            received(&mut rx),
            ["/tasks/create", "/tasks/start", "/tasks/exit"]
        );
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_full_outbox_drops_other_events_but_keeps_exits() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock.ttrpc");
        let outbox = Outbox::with_capacity(socket.to_str().unwrap(), "k8s.io", 2);
        outbox.publish(Event::Create(TaskCreate::default())).await;
        outbox.publish(start("a")).await;
        outbox.publish(Event::Exit(TaskExit::default())).await;
        outbox.publish(start("dropped")).await;
        outbox.publish(Event::Exit(TaskExit::default())).await;
        let (mut server, mut rx) = containerd(&socket).await;
        assert!(outbox.flush(Duration::from_secs(10)).await);
        assert_eq!(
            received(&mut rx),
            [
                "/tasks/create",
                "/tasks/start",
                "/tasks/exit",
                "/tasks/exit"
            ]
        );
        // Delivered events make room again.
        outbox.publish(start("b")).await;
        assert!(outbox.flush(Duration::from_secs(10)).await);
        assert_eq!(received(&mut rx), ["/tasks/start"]);
        server.shutdown().await.unwrap();
    }
}

#[cfg(any(test, feature = "fuzz"))]
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
