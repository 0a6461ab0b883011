//! The Sandbox API over the same task table: a pod sandbox made from CRI's
//! pod config, its status and exit, and the stop and shutdown of the pod.

use berth_proto::protobuf::well_known_types::any::Any;
use berth_proto::sandbox_api::*;

use std::time::Duration;

use super::*;

const SANDBOX: &str = "sb1";

/// A PodSandboxConfig of a hostname alone: the pod's own namespaces.
fn pod_config() -> Any {
    let mut value = vec![0x12, 5];
    value.extend_from_slice(b"web-0");
    Any {
        type_url: format!("type.googleapis.com/{}", crate::pod_config::TYPE_NAME),
        value,
        ..Default::default()
    }
}

fn create_sandbox_req(bundle: &std::path::Path) -> CreateSandboxRequest {
    CreateSandboxRequest {
        sandbox_id: SANDBOX.into(),
        bundle_path: bundle.display().to_string(),
        options: Some(pod_config()).into(),
        netns_path: "/run/netns/cni-test".into(),
        ..Default::default()
    }
}

/// Created and started through the Sandbox API; its TaskCreate and
/// TaskStart taken.
async fn run_sandbox(f: &mut Fixture, bundle: &std::path::Path) -> u32 {
    f.inner
        .create_sandbox(create_sandbox_req(bundle))
        .await
        .unwrap();
    let started = f.inner.start_sandbox(SANDBOX).await.unwrap();
    assert!(matches!(next_event(&mut f.events).await, Event::Create(_)));
    assert!(matches!(next_event(&mut f.events).await, Event::Start(_)));
    assert!(started.created_at.is_some());
    started.pid
}

#[tokio::test]
async fn a_sandbox_is_ready_until_stopped_and_its_exit_is_waited_for() {
    let bundle = tempfile::tempdir().unwrap();
    let mut f = fixture();
    let pid = run_sandbox(&mut f, bundle.path()).await;
    assert!(f.stub.is_sandbox(SANDBOX));
    let status = f.inner.sandbox_status(SANDBOX, false).unwrap();
    assert_eq!((status.state.as_str(), status.pid), ("SANDBOX_READY", pid));
    assert!(status.exited_at.is_none());
    assert!(status.info.is_empty());
    let verbose = f.inner.sandbox_status(SANDBOX, true).unwrap();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["pid"], pid);
    assert_eq!(info["runtimeSpec"]["hostname"], "web-0");

    let inner = Arc::clone(&f.inner);
    let waiter = tokio::spawn(async move { inner.wait_sandbox(SANDBOX).await });
    Arc::clone(&f.inner)
        .stop_sandbox(SANDBOX.into(), Duration::ZERO)
        .await
        .unwrap();
    let waited = waiter.await.unwrap().unwrap();
    assert_eq!(waited.exit_status, 137);
    let status = f.inner.sandbox_status(SANDBOX, false).unwrap();
    assert_eq!(status.state, "SANDBOX_NOTREADY");
    assert_eq!(status.exited_at, waited.exited_at);
    // The exit was journaled and announced, as a task's is.
    assert!(f
        .stub
        .journal
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(r, Record::Exit(e) if e.id == SANDBOX && e.status == 137)));
    // Stopped twice is stopped.
    Arc::clone(&f.inner)
        .stop_sandbox(SANDBOX.into(), Duration::ZERO)
        .await
        .unwrap();
}

/// containerd 2.3's annotations reach the sandbox's spec (berth's own two
/// keys stay), and StartSandbox hands the spec back as containerd names it.
#[tokio::test]
async fn annotations_go_into_the_spec_start_returns() {
    let bundle = tempfile::tempdir().unwrap();
    let f = fixture();
    let mut req = create_sandbox_req(bundle.path());
    req.annotations = [
        ("io.kubernetes.cri.sandbox-name", "web-0"),
        ("io.kubernetes.cri.container-type", "container"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    f.inner.create_sandbox(req).await.unwrap();
    let started = f.inner.start_sandbox(SANDBOX).await.unwrap();
    let spec = started
        .spec
        .as_ref()
        .expect("StartSandbox returns the spec");
    assert_eq!(
        spec.type_url,
        "types.containerd.io/opencontainers/runtime-spec/1/Spec"
    );
    let spec: serde_json::Value = serde_json::from_slice(&spec.value).unwrap();
    assert_eq!(spec["hostname"], "web-0");
    let annotations = &spec["annotations"];
    assert_eq!(annotations["io.kubernetes.cri.sandbox-name"], "web-0");
    assert_eq!(annotations["io.kubernetes.cri.container-type"], "sandbox");
    assert_eq!(annotations["io.kubernetes.cri.sandbox-id"], SANDBOX);
}

#[tokio::test]
async fn stop_ends_the_containers_first_with_their_grace_period() {
    let bundle = tempfile::tempdir().unwrap();
    let mut f = fixture();
    run_sandbox(&mut f, bundle.path()).await;
    create_and_start(&mut f, "app").await;
    Arc::clone(&f.inner)
        .stop_sandbox(SANDBOX.into(), Duration::from_secs(5))
        .await
        .unwrap();
    let app = f.inner.task("app").unwrap();
    // SIGTERM, within the grace period (the stub's processes obey it).
    assert_eq!(app.init().state().exit().map(|e| e.0), Some(128 + 15));
    let sandbox = f.inner.task(SANDBOX).unwrap();
    assert_eq!(sandbox.init().state().exit().map(|e| e.0), Some(137));
}

#[tokio::test]
async fn shutdown_deletes_every_task_then_ends_the_shim() {
    let bundle = tempfile::tempdir().unwrap();
    let mut f = fixture();
    run_sandbox(&mut f, bundle.path()).await;
    create_and_start(&mut f, "app").await;
    // A container's Shutdown (containerd sends one after its Delete when it
    // recovers) does not end the pod's shim.
    f.inner.shutdown(ShutdownRequest::default()).unwrap();
    Arc::clone(&f.inner)
        .shutdown_sandbox(SANDBOX.into())
        .await
        .unwrap();
    assert!(f.inner.tasks().live.is_empty());
    let removed = f.stub.removed.lock().unwrap().clone();
    assert_eq!(removed, vec!["app".to_owned(), SANDBOX.to_owned()]);
    tokio::time::timeout(Duration::from_secs(5), f.shutdown.notified())
        .await
        .expect("the shim is told to exit");
}

#[tokio::test]
async fn a_sandbox_the_shim_does_not_serve_is_not_found() {
    let bundle = tempfile::tempdir().unwrap();
    let mut f = fixture();
    assert_eq!(
        code(f.inner.sandbox_status(SANDBOX, false)),
        Code::NOT_FOUND
    );
    assert_eq!(code(f.inner.wait_sandbox(SANDBOX).await), Code::NOT_FOUND);
    run_sandbox(&mut f, bundle.path()).await;
    assert_eq!(code(f.inner.start_sandbox("other").await), Code::NOT_FOUND);
    assert_eq!(
        code(f.inner.sandbox_status("other", false)),
        Code::NOT_FOUND
    );
    assert_eq!(
        code(Arc::clone(&f.inner).shutdown_sandbox("other".into()).await),
        Code::NOT_FOUND
    );
    // One shim, one sandbox.
    let mut second = create_sandbox_req(bundle.path());
    second.sandbox_id = "sb2".into();
    assert_eq!(
        code(f.inner.create_sandbox(second).await),
        Code::ALREADY_EXISTS
    );
    // A task of the same id is the sandbox already.
    assert_eq!(
        code(f.inner.create(create_req(SANDBOX)).await),
        Code::ALREADY_EXISTS
    );
}

#[tokio::test]
async fn bad_create_requests_name_what_is_wrong() {
    let bundle = tempfile::tempdir().unwrap();
    let f = fixture();
    let cases: Vec<(CreateSandboxRequest, &str)> = vec![
        (
            CreateSandboxRequest {
                options: None.into(),
                ..create_sandbox_req(bundle.path())
            },
            "options",
        ),
        (
            CreateSandboxRequest {
                sandbox_id: "../x".into(),
                ..create_sandbox_req(bundle.path())
            },
            "sandbox_id",
        ),
        (
            CreateSandboxRequest {
                netns_path: String::new(),
                ..create_sandbox_req(bundle.path())
            },
            "netns_path",
        ),
        (
            CreateSandboxRequest {
                rootfs: vec![Default::default()],
                ..create_sandbox_req(bundle.path())
            },
            "rootfs",
        ),
    ];
    for (req, field) in cases {
        let err = f.inner.create_sandbox(req).await.unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
        assert_eq!(code::<()>(Err(err)), Code::INVALID_ARGUMENT);
    }
    // Nothing was made: the id is free and no sandbox is served.
    assert!(f.inner.tasks().live.is_empty());
    assert!(f.inner.pod_sandbox().is_none());
}

#[tokio::test]
async fn platform_and_ping() {
    let platform = super::super::sandbox::platform();
    assert_eq!(platform.os, "linux");
    assert!(!platform.architecture.is_empty());
    assert!(!platform.architecture.contains('_'), "a Go arch name");
    let bundle = tempfile::tempdir().unwrap();
    let mut f = fixture();
    assert_eq!(code(f.inner.sandbox_task(SANDBOX)), Code::NOT_FOUND);
    run_sandbox(&mut f, bundle.path()).await;
    f.inner.sandbox_task(SANDBOX).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_shim_never_asked_for_anything_gives_up_and_one_asked_does_not() {
    let limit = Duration::from_secs(120);
    let f = fixture();
    let idle = Service {
        inner: Arc::clone(&f.inner),
    };
    tokio::time::timeout(limit * 2, idle.unused_for(limit))
        .await
        .expect("an unused shim gives up");

    let bundle = tempfile::tempdir().unwrap();
    let mut f = fixture();
    run_sandbox(&mut f, bundle.path()).await;
    let used = Service {
        inner: Arc::clone(&f.inner),
    };
    assert!(tokio::time::timeout(limit * 10, used.unused_for(limit))
        .await
        .is_err());
}

#[tokio::test]
async fn of_two_racing_creates_one_makes_the_sandbox() {
    let bundle = tempfile::tempdir().unwrap();
    let f = fixture();
    let hold = Arc::new(tokio::sync::Notify::new());
    *f.stub.hold_create.lock().unwrap() = Some(Arc::clone(&hold));
    let inner = Arc::clone(&f.inner);
    let req = create_sandbox_req(bundle.path());
    let first = tokio::spawn(async move { inner.create_sandbox(req).await });
    // The first is inside its Create, holding the claim.
    tokio::time::timeout(Duration::from_secs(5), async {
        while f.inner.tasks().creating.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let mut second = create_sandbox_req(bundle.path());
    second.sandbox_id = "sb2".into();
    assert_eq!(
        code(f.inner.create_sandbox(second.clone()).await),
        Code::ALREADY_EXISTS
    );
    *f.stub.hold_create.lock().unwrap() = None;
    hold.notify_one();
    first.await.unwrap().unwrap();
    assert_eq!(f.inner.pod_sandbox().unwrap().id, SANDBOX);
    assert_eq!(
        code(f.inner.create_sandbox(second).await),
        Code::ALREADY_EXISTS
    );
}

#[tokio::test]
async fn a_failed_create_frees_the_sandbox_slot() {
    let bundle = tempfile::tempdir().unwrap();
    let mut f = fixture();
    *f.stub.fail_create.lock().unwrap() = berth_sandbox::spec::parse(b"{\"linux\": 3}").err();
    assert!(f
        .inner
        .create_sandbox(create_sandbox_req(bundle.path()))
        .await
        .is_err());
    run_sandbox(&mut f, bundle.path()).await;
}

#[tokio::test]
async fn shutdown_without_a_sandbox_task_still_ends_its_containers() {
    let mut f = fixture();
    create_and_start(&mut f, "app").await;
    Arc::clone(&f.inner)
        .shutdown_sandbox(SANDBOX.into())
        .await
        .unwrap();
    assert!(f.inner.tasks().live.is_empty());
    assert_eq!(
        f.stub.removed.lock().unwrap().clone(),
        vec!["app".to_owned()]
    );
    tokio::time::timeout(Duration::from_secs(5), f.shutdown.notified())
        .await
        .expect("the shim is told to exit");
}
