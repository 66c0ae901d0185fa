//! Real frameworks, unchanged, through slotproxy: redis-py's default pipeline, RQ (enqueue and
//! a worker that runs the job; the queue named with a hash tag), Celery (a worker runs a task;
//! kombu's key prefix set to a hash tag) and django-redis (`set_many`, `delete_pattern`). Each
//! queues commands for keys in several slots in one MULTI/EXEC: with
//! `cross_slot_transactions = "per-slot"` they work; with the default `"refuse"` they fail with
//! the CROSSSLOT that names the option. The scripts say why RQ and Celery need a hash tag.
//!
//! The checks are the Python scripts in `tests/frameworks/`; the frameworks come from PyPI
//! (`pip install -r tests/frameworks/requirements.txt`, which `.ci/run` does).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestCluster, TestProxy};
use slotproxy::config::CrossSlotTransactions;

/// How long one framework check may take (a Celery worker starts in a few seconds).
const CHECK_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `tests/frameworks/<script>` against `proxy`, expecting `expect` (`works` or `refused`).
///
/// # Panics
/// When python3 or a framework is missing (with the install hint), the check fails or takes
/// longer than `CHECK_TIMEOUT`; the script's output is in the message.
fn check(proxy: &TestProxy, script: &str, expect: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frameworks");
    let mut child = Command::new("python3")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("REDIS_URL", proxy.url())
        .env("EXPECT", expect)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run python3 (install it): {e}"));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > CHECK_TIMEOUT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "a framework is missing: pip install -r tests/frameworks/requirements.txt\n{stderr}"
    );
    assert!(
        output.status.success(),
        "{script} (expect {expect}) failed after {:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        started.elapsed(),
        output.status
    );
}

async fn proxy(cluster: &TestCluster, mode: CrossSlotTransactions) -> TestProxy {
    TestProxy::start_with(cluster, |c| c.session.cross_slot_transactions = mode).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_default_pipeline() {
    let cluster = TestCluster::start(3, 1);
    let per_slot = proxy(&cluster, CrossSlotTransactions::PerSlot).await;
    check(&per_slot, "redis_py_pipeline.py", "works");
    let refuse = proxy(&cluster, CrossSlotTransactions::Refuse).await;
    check(&refuse, "redis_py_pipeline.py", "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rq_enqueues_and_a_worker_runs_the_job() {
    let cluster = TestCluster::start(3, 1);
    let per_slot = proxy(&cluster, CrossSlotTransactions::PerSlot).await;
    check(&per_slot, "rq_job.py", "works");
    let refuse = proxy(&cluster, CrossSlotTransactions::Refuse).await;
    check(&refuse, "rq_job.py", "refused");
}

/// With kombu's `global_keyprefix` (a hash tag): see `celery_task.py` for why Celery's bare
/// defaults can't work through any Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_worker_runs_a_task_with_a_hash_tag_key_prefix() {
    let cluster = TestCluster::start(3, 1);
    let per_slot = proxy(&cluster, CrossSlotTransactions::PerSlot).await;
    check(&per_slot, "celery_task.py", "works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_redis_set_many_and_delete_pattern() {
    let cluster = TestCluster::start(3, 1);
    let per_slot = proxy(&cluster, CrossSlotTransactions::PerSlot).await;
    check(&per_slot, "django_redis_cache.py", "works");
    let refuse = proxy(&cluster, CrossSlotTransactions::Refuse).await;
    check(&refuse, "django_redis_cache.py", "refused");
}
