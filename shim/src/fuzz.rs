//! Entry points of the fuzz targets (the `fuzz` feature; the targets are
//! in `e2e/fuzz`). Each takes the fuzzer's bytes and asserts what must hold
//! whatever containerd, or whoever reaches the shim's socket, sends.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::api::*;
use berth_proto::protobuf::well_known_types::any::Any;
use berth_proto::protobuf::Message;
use berth_proto::shim_async::Task as TaskApi;
use berth_proto::ttrpc::r#async::TtrpcContext;
use tokio::sync::Notify;

use crate::events::testing::Channel;
use crate::reaper::Reaper;
use crate::service::stub::Stub;
use crate::service::Service;

/// The stdio URIs of a Create or Exec: `fifo`, `file://`, `binary://`.
pub fn log_uri(data: &[u8]) {
    let Ok(uri) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(crate::io::Target::Binary(binary)) = crate::io::target(uri, "stdout") {
        assert!(binary.path.is_absolute());
        // The shim sets these itself: a URI may not override them.
        assert!(binary
            .env
            .iter()
            .all(|(k, _)| k != "CONTAINER_ID" && k != "CONTAINER_NAMESPACE"));
    }
}

/// The task ids and exec ids requests are pointed at, so that a sequence
/// of requests meets the same tasks; the fuzzer's own ids are kept too.
const IDS: [(&str, &str); 7] = [
    ("p", ""),
    ("p", "e"),
    ("c", ""),
    ("c", "e"),
    ("c", "e2"),
    ("p", "e2"),
    ("", ""),
];

/// How long one request may take before it is dropped, as containerd's
/// deadline drops it: a Wait on a running task, or any request cut short.
/// The runtime's clock is paused and moves on only when nothing can run,
/// so a request is dropped where it waits, the same way on every run.
const DEADLINE: Duration = Duration::from_millis(5);

/// How long, in real time, tearing down may take: blocking work (freezer
/// files) runs on real threads while the paused clock jumps.
const TEAR_DOWN_LIMIT: Duration = Duration::from_secs(10);

/// The Task service, against the stub backend, driven by a sequence of
/// requests: each is a header byte (the method in the low 5 bits; in the
/// high 3, which of [`IDS`] it is aimed at, or 7 for the ids it carries), a
/// length byte and that many bytes of the request's protobuf encoding.
/// Every request answers or is dropped at its deadline; afterwards every
/// task can be killed and deleted, and nothing is left in the table.
pub fn task_service(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(drive(data));
}

async fn drive(mut data: &[u8]) {
    let reaper = Reaper::new();
    let stub = Stub::new(&reaper);
    let (publisher, mut events) = Channel::new();
    let service = Service::new(stub, publisher, reaper, Arc::new(Notify::new()));
    while let [header, len, rest @ ..] = data {
        let len = usize::from(*len).min(rest.len());
        let (body, next) = rest.split_at(len);
        data = next;
        let aim = IDS.get(usize::from(header >> 5)).copied();
        let call = call(&service, header & 0x1f, body, aim);
        let _ = tokio::time::timeout(DEADLINE, call).await;
        while events.try_recv().is_ok() {}
    }
    tear_down(&service).await;
}

/// Sets a request's task id and exec id to `aim`'s, if any.
fn aimed<R>(mut req: R, aim: Option<(&str, &str)>, set: impl FnOnce(&mut R, &str, &str)) -> R {
    if let Some((id, exec_id)) = aim {
        set(&mut req, id, exec_id);
    }
    req
}

async fn call<B: crate::backend::Backend, P: crate::events::Publisher>(
    service: &Service<B, P>,
    method: u8,
    body: &[u8],
    aim: Option<(&str, &str)>,
) {
    let ctx = TtrpcContext::default();
    macro_rules! parse {
        ($ty:ty) => {
            match <$ty>::parse_from_bytes(body) {
                Ok(req) => req,
                Err(_) => return,
            }
        };
        ($ty:ty, id) => {
            aimed(parse!($ty), aim, |r, id, _| r.id = id.into())
        };
        ($ty:ty, id, exec_id) => {
            aimed(parse!($ty), aim, |r, id, exec_id| {
                r.id = id.into();
                r.exec_id = exec_id.into();
            })
        };
    }
    let _ = match method {
        0 => {
            let req = parse!(CreateTaskRequest, id);
            service.create(&ctx, req).await.map(drop)
        }
        1 => service
            .start(&ctx, parse!(StartRequest, id, exec_id))
            .await
            .map(drop),
        2 => service
            .delete(&ctx, parse!(DeleteRequest, id, exec_id))
            .await
            .map(drop),
        3 => service.pids(&ctx, parse!(PidsRequest, id)).await.map(drop),
        4 => service
            .pause(&ctx, parse!(PauseRequest, id))
            .await
            .map(drop),
        5 => service
            .resume(&ctx, parse!(ResumeRequest, id))
            .await
            .map(drop),
        6 => service
            .kill(&ctx, parse!(KillRequest, id, exec_id))
            .await
            .map(drop),
        7 => {
            let mut req = parse!(ExecProcessRequest, id, exec_id);
            if req.spec.is_none() {
                req.spec = Some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: br#"{"args":["true"],"cwd":"/"}"#.to_vec(),
                    ..Default::default()
                })
                .into();
            }
            service.exec(&ctx, req).await.map(drop)
        }
        8 => service
            .resize_pty(&ctx, parse!(ResizePtyRequest, id, exec_id))
            .await
            .map(drop),
        9 => service
            .close_io(&ctx, parse!(CloseIORequest, id, exec_id))
            .await
            .map(drop),
        10 => service
            .update(&ctx, parse!(UpdateTaskRequest, id))
            .await
            .map(drop),
        11 => service
            .wait(&ctx, parse!(WaitRequest, id, exec_id))
            .await
            .map(drop),
        12 => service
            .stats(&ctx, parse!(StatsRequest, id))
            .await
            .map(drop),
        13 => service
            .connect(&ctx, parse!(ConnectRequest, id))
            .await
            .map(drop),
        14 => service
            .state(&ctx, parse!(StateRequest, id, exec_id))
            .await
            .map(drop),
        15 => service
            .shutdown(&ctx, parse!(ShutdownRequest, id))
            .await
            .map(drop),
        // Time passes: exits are drained, held work goes on.
        _ => {
            tokio::time::sleep(DEADLINE).await;
            Ok(())
        }
    };
}

/// Kills and deletes every task the requests left; each must go within a
/// few seconds, and the table must then be empty.
async fn tear_down<B: crate::backend::Backend, P: crate::events::Publisher>(
    service: &Service<B, P>,
) {
    let ctx = TtrpcContext::default();
    let start = std::time::Instant::now();
    // Creates whose caller gave up go on; they end one way or the other.
    while service.creating() {
        assert!(start.elapsed() < TEAR_DOWN_LIMIT, "a create never ends");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for id in service.task_ids() {
        let kill = KillRequest {
            id: id.clone(),
            signal: libc::SIGKILL as u32,
            all: true,
            ..Default::default()
        };
        let delete = DeleteRequest {
            id: id.clone(),
            ..Default::default()
        };
        let mut last = None;
        let start = std::time::Instant::now();
        while start.elapsed() < TEAR_DOWN_LIMIT {
            let _ = service.kill(&ctx, kill.clone()).await;
            match service.delete(&ctx, delete.clone()).await {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(e) = last {
            panic!("task {id:?} cannot be deleted: {e:?}");
        }
    }
    assert!(
        service.task_ids().is_empty(),
        "tasks left: {:?}",
        service.task_ids()
    );
    assert!(!service.creating(), "a create is still reserved");
}
