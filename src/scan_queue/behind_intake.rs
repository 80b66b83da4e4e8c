//! The scan's CPU work (MIME, archives, YARA-X) on threads of its own that run at a lower CPU
//! priority than intake. When a burst of mail wants every core, the kernel gives them to the
//! hand-offs first and the scan takes what is left; when intake is quiet, the scan has them all.
//! A pause before each claim ([`super::Intake`]) cannot do this: once a claim is made, its scan
//! competes with intake as an equal until it ends.
//!
//! On Linux the nice value is a property of a thread, so raising it on these threads leaves the
//! rest of the process alone. Nice orders threads within one scheduling group (a process, or the
//! processes of one session under autogroup); the daemons (clamd, rspamd) and PostgreSQL are
//! ordered by their own settings (`docs/operations.md`).
use std::sync::OnceLock;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// The nice value of the scan's threads (0 is the default, 19 the lowest priority). At 10, a busy
/// scan thread gets about a tenth of the share of a busy intake thread.
const SCAN_NICE: i32 = 10;

/// The name of the scan's threads (in `/proc/<pid>/task/*/comm`, `top -H`).
const THREAD_NAME: &str = "mailsensor-scan";

/// Runs `work` on one of the scan's threads.
pub fn spawn<F, R>(work: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    threads().spawn_blocking(work)
}

fn threads() -> &'static Runtime {
    static THREADS: OnceLock<Runtime> = OnceLock::new();
    THREADS.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            .on_thread_start(lower_priority)
            .build()
            .expect("the scan's threads start")
    })
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority only reads its arguments; `who` is this thread's own id.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, SCAN_NICE) };
    if result != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "the scan's threads keep intake's CPU priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
