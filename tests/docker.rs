//! Real Docker: drainit as PID 1 of containers built `FROM scratch` from
//! static binaries, driven with `docker stop`, `docker kill`, `docker exec`
//! and Docker's own HEALTHCHECK, and reached only through ports published
//! on 127.0.0.1.
//!
//! drainit comes the way users take it: scripts/release.sh builds the
//! release binary, scripts/image.sh makes the init-only image of it, and
//! tests/docker/Dockerfile copies /drainit from that image (`COPY
//! --from`); app and sigrec are static builds by scripts/build-static.sh.
//!
//! Gated on `docker info`: skipped (with the reason) without an engine,
//! a failure when CI=true. The images are built once per run of this file
//! and removed at exit; every container is removed by its guard.
mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::{release, release_binary, released, require, try_http, wait_for, TempDir};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The programs the image holds, besides drainit.
const EXAMPLES: [&str; 2] = ["app", "sigrec"];

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the docker client")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// This test binary's image tag and container name prefix: the pid keeps
/// parallel runs apart and lets a later run clean up after a crashed one.
fn image_tag() -> String {
    format!("drainit-test:{}", std::process::id())
}

/// The init-only image scripts/image.sh builds from the release binary.
fn init_tag() -> String {
    format!("{}-init", image_tag())
}

fn name_prefix() -> String {
    format!("drainit-test-{}-", std::process::id())
}

/// The release for this machine's CPU, or `None` when the test is skipped.
fn host_release() -> Option<&'static Path> {
    static RELEASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    released(RELEASE.get_or_init(|| release(&[std::env::consts::ARCH], "docker-dist")))
}

/// The image, or `None` when Docker is missing and the test is skipped.
fn image() -> Option<&'static str> {
    static ENGINE: OnceLock<Result<(), String>> = OnceLock::new();
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        match Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!("`docker info` failed: {}", text(&out).trim())),
            Err(e) => Err(format!("cannot run `docker info`: {e}")),
        }
    });
    if !require(
        "Docker",
        engine.is_ok(),
        engine.as_ref().err().map_or("", |e| e),
    ) {
        return None;
    }
    let dist = host_release()?;
    match IMAGE.get_or_init(|| build_image(dist)) {
        Ok(tag) => Some(tag),
        Err(e) => panic!("{e}"),
    }
}

/// scripts/image.sh with the release in `dist`: the init-only image `tag`.
fn build_init_image(dist: &Path, tag: &str) -> Result<(), String> {
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("scripts/image.sh"))
        .args(["-t", tag])
        .env("DIST_DIR", dist)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/image.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("scripts/image.sh failed:\n{}", text(&out)));
    }
    Ok(())
}

fn build_image(dist: &Path) -> Result<String, String> {
    remove_leftovers();
    let started = Instant::now();
    // Removed at exit (statics are never dropped), whatever happens next.
    extern "C" fn remove_images() {
        for tag in [image_tag(), init_tag()] {
            let _ = Command::new("docker")
                .args(["rmi", "-f", &tag])
                .stdin(Stdio::null())
                .output();
        }
    }
    // SAFETY: registers a plain function with no preconditions.
    unsafe { libc::atexit(remove_images) };
    build_init_image(dist, &init_tag())?;
    // app and sigrec. The build happens here, in its own target directory:
    // the cargo running this test holds target/'s locks, and the musl
    // artifacts are kept there between runs.
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("scripts/build-static.sh"))
        .args(EXAMPLES)
        .env("CARGO_TARGET_DIR", Path::new(REPO).join("target/static"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/build-static.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("scripts/build-static.sh failed:\n{}", text(&out)));
    }
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let ctx = TempDir::new("docker-ctx");
    let copy = |from: &Path, name: &str| {
        fs::copy(from, ctx.path(name)).map_err(|e| format!("copying {}: {e}", from.display()))
    };
    for e in EXAMPLES {
        copy(&Path::new(&dir).join("examples").join(e), e)?;
    }
    copy(
        &Path::new(REPO).join("tests/docker/Dockerfile"),
        "Dockerfile",
    )?;
    let tag = image_tag();
    let from = format!("DRAINIT_IMAGE={}", init_tag());
    let built = docker(&[
        "build",
        "-q",
        "--build-arg",
        &from,
        "-t",
        &tag,
        &ctx.arg(""),
    ]);
    if !built.status.success() {
        return Err(format!("docker build failed:\n{}", text(&built)));
    }
    eprintln!(
        "built {tag} from {} and {dir} in {:.1}s",
        init_tag(),
        started.elapsed().as_secs_f64()
    );
    Ok(tag)
}

/// Containers and images of earlier runs of this file whose process is
/// gone (killed before its guards ran).
fn remove_leftovers() {
    let dead = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
    };
    let names = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "name=drainit-test-",
        "--format",
        "{{.Names}}",
    ]);
    for name in names.lines() {
        let pid = name
            .trim_start_matches("drainit-test-")
            .split('-')
            .next()
            .unwrap_or("");
        if dead(pid) {
            let _ = docker(&["rm", "-f", "-v", name]);
        }
    }
    let stages = docker_ok(&["images", "-q", "--filter", &format!("label={STAGE_LABEL}")]);
    for id in stages.lines() {
        let label = format!("{{{{index .Config.Labels \"{STAGE_LABEL}\"}}}}");
        if dead(&docker_ok(&["image", "inspect", "-f", &label, id])) {
            let _ = docker(&["rmi", "-f", id]);
        }
    }
    let tags = docker_ok(&["images", "drainit-test", "--format", "{{.Tag}}"]);
    // PID, or PID-SUFFIX for this file's other images.
    for tag in tags
        .lines()
        .filter(|t| dead(t.split('-').next().unwrap_or("")))
    {
        let _ = docker(&["rmi", "-f", &format!("drainit-test:{tag}")]);
    }
}

/// A container of the test image, removed (by id) when dropped.
struct Container {
    id: String,
    name: String,
}

impl Container {
    /// `docker run -d` with drainit's health port (8099) and the app's
    /// (8080) published on 127.0.0.1; `cmd` is the program drainit runs.
    fn start(image: &str, tag: &str, env: &[(&str, &str)], cmd: &[&str]) -> Container {
        Container::start_with(image, tag, &[], env, cmd)
    }

    /// [`start`](Self::start) with more `docker run` options.
    fn start_with(
        image: &str,
        tag: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        cmd: &[&str],
    ) -> Container {
        let name = format!("{}{tag}", name_prefix());
        let mut args: Vec<String> = ["run", "-d", "--name", &name]
            .iter()
            .chain(&["-p", "127.0.0.1::8099", "-p", "127.0.0.1::8080"])
            .chain(&["-e", "DRAINIT_LOG=info"])
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        for (k, v) in env {
            args.extend(["-e".to_string(), format!("{k}={v}")]);
        }
        args.push(image.to_string());
        args.extend(cmd.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = docker(&args);
        // A container may exist even when run failed (e.g. on start).
        let guard = Container {
            id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            name,
        };
        assert!(out.status.success(), "docker run failed: {}", text(&out));
        guard
    }

    /// The host address Docker published container port `port` on.
    fn port(&self, port: u16) -> SocketAddr {
        let out = docker_ok(&["port", &self.id, &format!("{port}/tcp")]);
        out.lines()
            .find_map(|l| l.trim().parse::<SocketAddr>().ok())
            .filter(|a| a.ip().is_loopback())
            .unwrap_or_else(|| panic!("port {port} is not published on 127.0.0.1: {out:?}"))
    }

    /// The id, or the name for a container `docker run` attached to.
    fn target(&self) -> &str {
        if self.id.is_empty() {
            &self.name
        } else {
            &self.id
        }
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, self.target()])
    }

    fn health(&self) -> String {
        self.inspect("{{.State.Health.Status}}")
    }

    fn exit_code(&self) -> i32 {
        self.inspect("{{.State.ExitCode}}").parse().unwrap()
    }

    /// `docker logs -t`: stdout and stderr, each line with Docker's timestamp.
    fn logs(&self) -> String {
        text(&docker(&["logs", "-t", &self.id]))
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.id.as_str()];
        all.extend(args);
        docker(&all)
    }

    /// A file's contents, copied out with `docker cp` (works on stopped
    /// containers too); empty when it does not exist (yet).
    fn read_file(&self, path: &str) -> String {
        let dir = TempDir::new("docker-cp");
        let out = docker(&["cp", &format!("{}:{path}", self.id), &dir.arg("f")]);
        if !out.status.success() {
            return String::new();
        }
        fs::read_to_string(dir.path("f")).unwrap_or_default()
    }

    /// Signal numbers sigrec recorded in `path`.
    fn recorded(&self, path: &str) -> Vec<i32> {
        self.read_file(path)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// (pid, state, comm) of every process in the container, from `docker
    /// top` (ps on the engine's host: nothing is needed inside the image).
    fn processes(&self) -> Vec<(String, String, String)> {
        docker_ok(&["top", &self.id, "-eo", "pid,stat,comm"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.into(), f.next()?.into(), f.next()?.into()))
            })
            .collect()
    }

    /// (pid, state, comm) of every descendant of the container's PID 1,
    /// zombies included, read from this host's /proc; `None` when the
    /// engine's processes are not visible here (a remote or nested engine).
    fn host_descendants(&self) -> Option<Vec<(String, String, String)>> {
        let pid: i32 = self.inspect("{{.State.Pid}}").parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "drainit" {
            return None;
        }
        Some(
            common::descendants_of(pid)
                .into_iter()
                .map(|(p, state)| {
                    let comm = fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                    (p.to_string(), state.to_string(), comm.trim().to_string())
                })
                .collect(),
        )
    }

    /// Waits until drainit answers /readyz with 200 on the published port.
    fn wait_ready(&self) {
        let addr = self.port(8099);
        let deadline = Instant::now() + Duration::from_secs(15);
        while code(addr, "/readyz") != Some(200) {
            if Instant::now() >= deadline {
                panic!(
                    "{} never became ready on {addr}; logs:\n{}",
                    self.name,
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `docker stop -t TIMEOUT` on a thread; joins to (output, how long it took).
    fn stop_in_background(&self, timeout: u32) -> thread::JoinHandle<(Output, Duration)> {
        let id = self.id.clone();
        let t0 = Instant::now();
        thread::spawn(move || {
            let out = docker(&["stop", "-t", &timeout.to_string(), &id]);
            (out, t0.elapsed())
        })
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", self.target()]);
    }
}

/// The status code of one GET, or `None` when there was no HTTP answer.
fn code(addr: SocketAddr, path: &str) -> Option<u16> {
    try_http("GET", addr, path, &[]).ok().map(|(c, _)| c)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Seconds since midnight of the first line of `logs` containing `needle`,
/// from Docker's RFC 3339 timestamp at the start of the line.
fn logged_at(logs: &str, needle: &str) -> Option<f64> {
    let line = logs.lines().find(|l| l.contains(needle))?;
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

#[test]
fn docker_stop_drains_before_the_app_gets_sigterm() {
    let Some(image) = image() else { return };
    let delay = 2.0;
    let c = Container::start(
        image,
        "stop",
        &[("DRAINIT_DRAIN_DELAY", "2")],
        &["app", "--listen", "0.0.0.0:8080", "--term-exit", "3"],
    );
    let (health, app) = (c.port(8099), c.port(8080));
    c.wait_ready();
    wait_for(Duration::from_secs(10), "the app to answer", || {
        code(app, "/") == Some(200)
    });

    let t0 = Instant::now();
    let stopper = c.stop_in_background(10);
    let (mut first_503, mut last_app_ok, mut first_app_fail) = (None, None, None);
    while !stopper.is_finished() {
        let now = secs(t0.elapsed());
        if first_503.is_none() && code(health, "/readyz") == Some(503) {
            first_503 = Some(now);
        }
        match code(app, "/") {
            Some(200) => last_app_ok = Some(now),
            _ => {
                first_app_fail.get_or_insert(now);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let (out, took) = stopper.join().unwrap();
    let logs = c.logs();
    let facts = format!(
        "stop took {took:?}; /readyz 503 first at {first_503:?} s, app last 200 at \
         {last_app_ok:?} s, first failure at {first_app_fail:?} s; logs:\n{logs}"
    );
    assert!(out.status.success(), "docker stop failed: {}", text(&out));

    let first_503 = first_503.unwrap_or_else(|| panic!("/readyz never said 503: {facts}"));
    assert!(first_503 < 1.0, "readiness flipped late: {facts}");
    let last_ok = last_app_ok.unwrap_or_else(|| panic!("the app never answered: {facts}"));
    let fail = first_app_fail.unwrap_or_else(|| panic!("the app never stopped: {facts}"));
    assert!(
        first_503 < last_ok,
        "the app must still serve while /readyz says 503: {facts}"
    );
    assert!(
        fail >= delay * 0.9,
        "the app stopped serving before the {delay}s drain delay was over: {facts}"
    );
    // Docker's own timestamps: drainit started draining, then the app exited.
    let drained =
        logged_at(&logs, "-> draining").unwrap_or_else(|| panic!("no drain in the logs: {facts}"));
    let exited = logged_at(&logs, "app app: exiting")
        .unwrap_or_else(|| panic!("the app did not log its exit: {facts}"));
    assert!(
        exited - drained >= delay * 0.9,
        "the app exited {:.3}s after the drain began: {facts}",
        exited - drained
    );
    assert!(
        took < Duration::from_secs(10),
        "the stop outlasted docker's timeout: {facts}"
    );
    assert_eq!(
        c.exit_code(),
        3,
        "the container exits with the app's code: {facts}"
    );
    eprintln!(
        "docker stop: /readyz 503 at {first_503:.2}s, app served until {last_ok:.2}s, \
         refused from {fail:.2}s (logs: {:.2}s after the drain began), stop took {:.2}s",
        exited - drained,
        secs(took)
    );
}

#[test]
fn docker_kill_reaches_the_app_and_stop_forwards_sigterm_once() {
    let Some(image) = image() else { return };
    let c = Container::start(
        image,
        "signals",
        // Ready only once sigrec has its handlers in place.
        &[
            ("DRAINIT_READY_FILE", "/tmp/ready"),
            ("DRAINIT_DRAIN_DELAY", "0.5"),
        ],
        &["sigrec", "--out", "/tmp/signals", "--ready", "/tmp/ready"],
    );
    c.wait_ready();
    for (sig, want) in [("USR1", vec![10]), ("HUP", vec![10, 1])] {
        docker_ok(&["kill", "-s", sig, &c.id]);
        wait_for(
            Duration::from_secs(10),
            &format!("SIG{sig} to reach the app"),
            || c.recorded("/tmp/signals") == want,
        );
    }
    let (out, took) = c.stop_in_background(10).join().unwrap();
    assert!(out.status.success(), "docker stop failed: {}", text(&out));
    assert_eq!(
        c.recorded("/tmp/signals"),
        vec![10, 1, 15],
        "after docker stop (took {took:?}); logs:\n{}",
        c.logs()
    );
    assert_eq!(c.exit_code(), 0);
}

#[test]
fn orphans_are_reaped_in_a_scratch_container() {
    let Some(image) = image() else { return };
    let c = Container::start(
        image,
        "zombies",
        &[("DRAINIT_READY_FILE", "/tmp/ready")],
        // 1000 grandchildren orphaned to PID 1, each exiting 100 ms later.
        &[
            "sigrec",
            "--orphans",
            "1000",
            "--orphans-sleep",
            "100",
            "--ready",
            "/tmp/ready",
        ],
    );
    c.wait_ready();
    let metrics = c.port(8099);
    let mut reaped = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while reaped < 1000 && Instant::now() < deadline {
        reaped = try_http("GET", metrics, "/metrics", &[])
            .ok()
            .and_then(|(_, body)| {
                body.lines()
                    .find_map(|l| l.strip_prefix("drainit_zombies_reaped_total "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0);
        thread::sleep(Duration::from_millis(50));
    }
    // Zombies have left the container's cgroup, so `docker top` cannot show
    // them: look at PID 1's children in /proc when the engine shares our
    // PID namespace (it does on the project's machines).
    let (view, procs) = match c.host_descendants() {
        Some(procs) => ("/proc", procs),
        // docker top lists drainit itself too.
        None => (
            "docker top",
            c.processes()
                .into_iter()
                .filter(|p| p.2 != "drainit")
                .collect(),
        ),
    };
    let zombies = procs.iter().filter(|p| p.1.starts_with('Z')).count();
    assert!(
        reaped >= 1000,
        "drainit reaped {reaped} of 1000 orphans; {view}: {} processes, {zombies} zombies",
        procs.len()
    );
    assert_eq!(zombies, 0, "zombies left ({view}): {procs:?}");
    let names: Vec<&str> = procs.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(
        names,
        ["sigrec"],
        "drainit's descendants ({view}): {procs:?}"
    );
}

#[test]
fn docker_health_is_healthy_after_start_and_unhealthy_during_the_drain() {
    let Some(image) = image() else { return };
    let delay = 5.0;
    let c = Container::start(
        image,
        "health",
        &[("DRAINIT_DRAIN_DELAY", "5"), ("DRAINIT_STOP_TIMEOUT", "20")],
        &["app", "--listen", "0.0.0.0:8080"],
    );
    let app = c.port(8080);
    wait_for(
        Duration::from_secs(15),
        "Docker to call the container healthy",
        || c.health() == "healthy",
    );
    let t0 = Instant::now();
    let stopper = c.stop_in_background(20);
    wait_for(
        Duration::from_secs(4),
        "Docker to call the draining container unhealthy",
        || c.health() == "unhealthy",
    );
    let unhealthy_at = t0.elapsed();
    assert_eq!(
        code(app, "/"),
        Some(200),
        "the app must still serve when Docker sees the container unhealthy ({unhealthy_at:?} into the stop)"
    );
    let (out, took) = stopper.join().unwrap();
    assert!(out.status.success(), "docker stop failed: {}", text(&out));
    assert!(
        secs(took) >= delay * 0.9 && took < Duration::from_secs(20),
        "stop took {took:?} for a {delay}s drain; logs:\n{}",
        c.logs()
    );
    assert_eq!(c.exit_code(), 0);
}

/// A FROM scratch image run as a non-root user with TCP control off:
/// `docker exec C drainit drain` works over the control socket, which
/// drainit puts in the writable /run the container is given.
#[test]
fn docker_exec_drain_uses_the_control_socket_as_a_non_root_user() {
    let Some(image) = image() else { return };
    let c = Container::start_with(
        image,
        "socket",
        &["--user", "65534:65534", "--tmpfs", "/run"],
        &[
            ("DRAINIT_TCP_CONTROL", "off"),
            ("DRAINIT_DRAIN_DELAY", "0.5"),
        ],
        &["app", "--listen", "0.0.0.0:8080"],
    );
    let health = c.port(8099);
    c.wait_ready();
    assert_eq!(
        code(health, "/sethealth/ko"),
        Some(403),
        "TCP control is off"
    );
    let out = c.exec(&["drainit", "drain"]);
    assert!(out.status.success(), "drainit drain: {}", text(&out));
    assert!(text(&out).contains("drained"), "{}", text(&out));
    assert_eq!(code(health, "/readyz"), Some(503));
    let out = c.exec(&["drainit", "undrain"]);
    assert!(out.status.success(), "drainit undrain: {}", text(&out));
    assert_eq!(code(health, "/readyz"), Some(200));
}

#[test]
fn docker_exec_drainit_drain_flips_readiness() {
    let Some(image) = image() else { return };
    let c = Container::start(
        image,
        "exec",
        &[("DRAINIT_DRAIN_DELAY", "0.5")],
        &["app", "--listen", "0.0.0.0:8080"],
    );
    let (health, app) = (c.port(8099), c.port(8080));
    c.wait_ready();
    assert_eq!(c.exec(&["drainit", "probe"]).status.code(), Some(0));

    let out = c.exec(&["drainit", "drain"]);
    assert!(out.status.success(), "drainit drain: {}", text(&out));
    assert!(text(&out).contains("drained"), "{}", text(&out));
    assert_eq!(
        code(health, "/readyz"),
        Some(503),
        "readiness through the published port"
    );
    assert_eq!(
        code(app, "/"),
        Some(200),
        "a manual drain leaves the app serving"
    );
    let probe = c.exec(&["drainit", "probe"]);
    assert_eq!(
        probe.status.code(),
        Some(1),
        "the HEALTHCHECK command: {}",
        text(&probe)
    );
    let status = text(&c.exec(&["drainit", "status"]));
    assert!(status.contains("state draining"), "{status}");
    wait_for(
        Duration::from_secs(5),
        "Docker to see the drained container unhealthy",
        || c.health() == "unhealthy",
    );

    let out = c.exec(&["drainit", "undrain"]);
    assert!(out.status.success(), "drainit undrain: {}", text(&out));
    assert_eq!(code(health, "/readyz"), Some(200));
    wait_for(
        Duration::from_secs(5),
        "Docker to see the container healthy again",
        || c.health() == "healthy",
    );
}

#[test]
fn exit_codes_pass_through_docker() {
    let Some(image) = image() else { return };
    for (tag, args, want) in [
        ("exit0", vec!["--exit", "0"], 0),
        ("exit3", vec!["--exit", "3"], 3),
        ("kill9", vec!["--kill-self", "9"], 137),
        ("kill15", vec!["--kill-self", "15"], 143),
    ] {
        let name = format!("{}{tag}", name_prefix());
        let guard = Container {
            id: String::new(),
            name: name.clone(),
        };
        let mut run = vec!["run", "--name", &name, image, "sigrec"];
        run.extend(&args);
        let out = docker(&run);
        assert_eq!(
            out.status.code(),
            Some(want),
            "sigrec {args:?}: {}",
            text(&out)
        );
        assert_eq!(guard.exit_code(), want);
    }
}

#[test]
fn grace_kill_comes_from_drainit_before_dockers_timeout() {
    let Some(image) = image() else { return };
    let c = Container::start(
        image,
        "grace",
        &[
            ("DRAINIT_READY_FILE", "/tmp/ready"),
            ("DRAINIT_DRAIN_DELAY", "0.5"),
            ("DRAINIT_GRACE", "1"),
        ],
        &[
            "sigrec",
            "--ignore-term",
            "--out",
            "/tmp/signals",
            "--ready",
            "/tmp/ready",
        ],
    );
    c.wait_ready();
    let (out, took) = c.stop_in_background(20).join().unwrap();
    assert!(out.status.success(), "docker stop failed: {}", text(&out));
    assert!(
        took < Duration::from_secs(6),
        "drain 0.5 s + grace 1 s, yet the stop took {took:?} (Docker's SIGKILL comes at 20 s)"
    );
    assert_eq!(
        c.exit_code(),
        137,
        "killed by SIGKILL: 128+9; logs:\n{}",
        c.logs()
    );
    assert_eq!(c.recorded("/tmp/signals"), vec![15]);
}

#[test]
fn scale_down_script_drains_then_removes() {
    let Some(image) = image() else { return };
    // Three replicas of a compose service, as `docker compose up --scale`
    // labels them; the script is to remove the two highest-numbered.
    let service = format!("{}web", name_prefix());
    let replicas: Vec<Container> = (1..=3)
        .map(|n| {
            Container::start_with(
                image,
                &format!("web-{n}"),
                &[
                    "--label",
                    &format!("com.docker.compose.service={service}"),
                    "--label",
                    &format!("com.docker.compose.container-number={n}"),
                ],
                // No drain delay of drainit's own: only the script's wait
                // stands between the drain and the stop.
                &[("DRAINIT_DRAIN_DELAY", "0")],
                &["app", "--listen", "0.0.0.0:8080"],
            )
        })
        .collect();
    let ports: Vec<(SocketAddr, SocketAddr)> = replicas
        .iter()
        .map(|c| (c.port(8099), c.port(8080)))
        .collect();
    for c in &replicas {
        c.wait_ready();
    }
    let t0 = Instant::now();
    let script = {
        let service = service.clone();
        thread::spawn(move || {
            Command::new("bash")
                .arg(Path::new(REPO).join("examples/scale-down.sh"))
                // Docker's HEALTHCHECK (every second) stands in for the proxy.
                .args(["--probes", "2", "--timeout", "30", "--stop-timeout", "10"])
                .args(["--service", &service, "--count", "2"])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
    };
    // /status, unlike /readyz, does not count as a readiness probe.
    let mut drained_at = [None; 3];
    let mut app_down_at = [None; 3];
    while !script.is_finished() {
        let now = secs(t0.elapsed());
        for (i, (health, app)) in ports.iter().enumerate() {
            let draining = try_http("GET", *health, "/status", &[])
                .is_ok_and(|(_, b)| b.contains("\"state\":\"draining\""));
            if draining && drained_at[i].is_none() {
                drained_at[i] = Some(now);
            }
            if app_down_at[i].is_none() && code(*app, "/") != Some(200) {
                app_down_at[i] = Some(now);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = script.join().unwrap();
    let facts = format!(
        "drained at {drained_at:?}, app down at {app_down_at:?}; script:\n{}",
        text(&out)
    );
    assert!(out.status.success(), "scale-down.sh failed: {facts}");
    for i in 1..3 {
        let (Some(drained), Some(down)) = (drained_at[i], app_down_at[i]) else {
            panic!(
                "replica {} was not seen draining and stopping: {facts}",
                i + 1
            );
        };
        // Two probes a second apart were answered 503 before the stop.
        assert!(
            down - drained >= 0.9,
            "replica {} stopped {:.2}s after its drain: {facts}",
            i + 1,
            down - drained
        );
        let c = &replicas[i];
        assert!(
            text(&out).contains(&format!("{}: 2 unready probes answered", c.name)),
            "the script must wait for the probes: {facts}"
        );
        let gone = docker(&["inspect", &c.id]);
        assert!(
            !gone.status.success(),
            "{} was not removed: {facts}",
            c.name
        );
    }
    // Replica 1 was left alone: ready and serving.
    assert_eq!(drained_at[0], None, "{facts}");
    assert_eq!(code(ports[0].0, "/readyz"), Some(200), "{facts}");
    assert_eq!(code(ports[0].1, "/"), Some(200), "{facts}");
}

/// Removes an image when dropped.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
        // The build stage's image, left untagged by the builder.
        let stage = format!("label={STAGE_LABEL}={}", std::process::id());
        for id in docker_ok(&["images", "-q", "--filter", &stage]).lines() {
            let _ = docker(&["rmi", "-f", id]);
        }
    }
}

/// Marks the build-stage images of the Dockerfile.example test with the pid.
const STAGE_LABEL: &str = "drainit-test-stage";

/// Dockerfile.example's runtime stage as a user gets it (scratch, USER
/// 65534, its ENV budget, HEALTHCHECK, STOPSIGNAL, ENTRYPOINT), with its
/// build stage (which would pull a rust image) replaced by the static
/// binaries: the example app stands in for "myapp".
#[test]
fn dockerfile_example_runtime_stage_works() {
    let Some(image) = image() else { return };
    let example = fs::read_to_string(Path::new(REPO).join("Dockerfile.example")).unwrap();
    let runtime = example
        .find("# ---- runtime")
        .map(|at| &example[at..])
        .expect("Dockerfile.example has no '# ---- runtime' stage marker");
    let ctx = TempDir::new("docker-example");
    // The test image's binaries, copied out of it: they are what was tested.
    let holder = docker_ok(&["create", image]);
    let _holder = Container {
        id: holder.clone(),
        name: String::new(),
    };
    for (from, to) in [("drainit", "drainit"), ("app", "myapp")] {
        docker_ok(&[
            "cp",
            &format!("{holder}:/usr/local/bin/{from}"),
            &ctx.arg(to),
        ]);
    }
    fs::write(
        ctx.path("Dockerfile"),
        format!(
            "FROM scratch AS build\nLABEL {STAGE_LABEL}={}\nCOPY drainit myapp /out/bin/\n\n{runtime}",
            std::process::id()
        ),
    )
    .unwrap();
    let tag = format!("{}-example", image_tag());
    let built = docker(&["build", "-q", "-t", &tag, &ctx.arg("")]);
    let _image = ImageGuard(tag.clone());
    assert!(
        built.status.success(),
        "building the runtime stage: {}",
        text(&built)
    );

    // The example app has /ready where a real app would have /health.
    let c = Container::start(
        &tag,
        "example",
        &[("DRAINIT_READY_HTTP", "http://127.0.0.1:8080/ready")],
        &[],
    );
    let app = c.port(8080);
    c.wait_ready();
    assert_eq!(code(app, "/"), Some(200));
    let mut users: Vec<String> = docker_ok(&["top", &c.id, "-eo", "pid,uid,comm"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .collect();
    users.sort();
    assert_eq!(
        users,
        ["65534 drainit", "65534 myapp"],
        "USER 65534 runs both"
    );
    // Its HEALTHCHECK has a 5 s interval: the first verdict comes after 5 s.
    wait_for(
        Duration::from_secs(15),
        "Docker to call the example healthy",
        || c.health() == "healthy",
    );
    let (out, took) = c.stop_in_background(10).join().unwrap();
    assert!(out.status.success(), "docker stop failed: {}", text(&out));
    let logs = c.logs();
    assert!(
        secs(took) >= 2.7 && took < Duration::from_secs(9),
        "default drain 3 s, then the app exits: the stop took {took:?}; logs:\n{logs}"
    );
    assert_eq!(c.exit_code(), 0, "logs:\n{logs}");
    assert!(
        !logs.contains("exceeds the stop timeout"),
        "the example's budget must fit: {logs}"
    );
}

/// What `docker save` holds of `image`: the path of every file in each of
/// its layers.
fn layer_files(image: &str) -> Vec<Vec<String>> {
    let dir = TempDir::new("docker-save");
    docker_ok(&["save", "-o", &dir.arg("image.tar"), image]);
    let untar = |args: &[&str]| {
        let out = Command::new("tar").args(args).output().expect("tar");
        assert!(out.status.success(), "tar {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    untar(&["-xf", &dir.arg("image.tar"), "-C", &dir.arg("")]);
    let text = fs::read_to_string(dir.path("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let Some(layers) = manifest[0]["Layers"].as_array() else {
        panic!("manifest.json without Layers: {manifest}")
    };
    layers
        .iter()
        .map(|l| {
            let layer = dir.path(l.as_str().unwrap());
            untar(&["-tf", &layer.to_string_lossy()])
                .lines()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The bytes of `path` in `image`, copied out of a created container.
fn file_in(image: &str, path: &str) -> Vec<u8> {
    let holder = Container {
        id: docker_ok(&["create", image]),
        name: String::new(),
    };
    let dir = TempDir::new("docker-cp");
    docker_ok(&["cp", &format!("{}:{path}", holder.id), &dir.arg("f")]);
    fs::read(dir.path("f")).unwrap()
}

#[test]
fn init_image_holds_the_release_binary_and_nothing_else() {
    let Some(_) = image() else { return };
    let init = init_tag();
    assert_eq!(layer_files(&init), [["drainit"]], "{init}'s layers");
    let dist = host_release().unwrap();
    let release = fs::read(release_binary(dist, std::env::consts::ARCH)).unwrap();
    assert!(
        file_in(&init, "/drainit") == release,
        "/drainit is not the release binary"
    );
    // Its default command says which drainit it holds.
    let out = docker(&["run", "--rm", &init]);
    assert!(out.status.success(), "docker run {init}: {}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("drainit {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// The build context `scripts/image.sh --context` writes for `docker
/// buildx build --platform linux/amd64,linux/arm64` (which cannot run
/// here): buildx sets TARGETARCH per platform, as this test does by hand,
/// and each platform's image must hold that CPU's release binary.
#[test]
fn init_image_context_gives_each_platform_its_binary() {
    let Some(_) = image() else { return };
    let both = release(&["x86_64", "aarch64"], "both-dist");
    let Some(dist) = released(&both) else { return };
    let ctx = TempDir::new("init-context");
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("scripts/image.sh"))
        .args(["--context", &ctx.arg("")])
        .env("DIST_DIR", dist)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "image.sh --context: {}", text(&out));
    for (arch, platform) in [("x86_64", "amd64"), ("aarch64", "arm64")] {
        let tag = format!("{}-{platform}", init_tag());
        let _image = ImageGuard(tag.clone());
        let arg = format!("TARGETARCH={platform}");
        docker_ok(&["build", "-q", "--build-arg", &arg, "-t", &tag, &ctx.arg("")]);
        let release = fs::read(release_binary(dist, arch)).unwrap();
        assert!(
            file_in(&tag, "/drainit") == release,
            "linux/{platform} did not get the {arch} release binary"
        );
    }
}
