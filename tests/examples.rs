//! The deployment examples users copy (examples/compose-traefik.yml,
//! examples/kubernetes.yaml, examples/scale-down.sh) are valid, and their
//! timing arithmetic holds: the orchestrator's stop budget covers drainit's
//! drain + grace, and the drain outlasts the proxy's reaction time.
//! The Docker ones run for real in tests/docker.rs.
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::require;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn path(rel: &str) -> String {
    Path::new(REPO).join(rel).to_string_lossy().into_owned()
}

fn run(program: &str, args: &[&str]) -> std::io::Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A Python with PyYAML: Debian's python3-yaml comes with docker-compose,
/// so /usr/bin/python3 has it wherever compose is installed.
fn python_with_yaml() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| run(p, &["-c", "import yaml"]).is_ok_and(|o| o.status.success()))
}

/// Runs a Python check over YAML documents; it prints why and exits 1 on failure.
fn check_yaml(file: &str, script: &str) {
    let python = python_with_yaml();
    if !require(
        "python3 with PyYAML",
        python.is_some(),
        "to parse the YAML examples",
    ) {
        return;
    }
    let prelude = "import sys, yaml\n\
                   docs = [d for d in yaml.safe_load_all(sys.stdin) if d]\n\
                   def secs(v):\n    v = str(v)\n    return float(v[:-1]) if v.endswith('s') else float(v)\n\
                   def check(ok, why):\n    if not ok:\n        print('FAILED: ' + why); sys.exit(1)\n";
    let full = format!("{prelude}{script}");
    let out = Command::new(python.unwrap())
        .args(["-c", &full])
        .stdin(std::fs::File::open(path(file)).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{file}: {}", text(&out));
}

#[test]
fn compose_traefik_example_is_valid_compose() {
    let compose = ["docker-compose", "docker"].into_iter().find(|c| {
        let args: &[&str] = if *c == "docker" {
            &["compose", "version"]
        } else {
            &["version"]
        };
        run(c, args).is_ok_and(|o| o.status.success())
    });
    if !require(
        "docker-compose",
        compose.is_some(),
        "to validate examples/compose-traefik.yml",
    ) {
        return;
    }
    let file = path("examples/compose-traefik.yml");
    let mut args = if compose == Some("docker") {
        vec!["compose"]
    } else {
        vec![]
    };
    args.extend(["-f", &file, "config", "-q"]);
    let out = run(compose.unwrap(), &args).unwrap();
    assert!(
        out.status.success(),
        "compose rejects the example: {}",
        text(&out)
    );
}

#[test]
fn compose_traefik_example_budget_covers_drain_and_grace() {
    check_yaml(
        "examples/compose-traefik.yml",
        r#"
app = docs[0]['services']['errorpage']
env = app['environment']
drain, grace = secs(env['DRAINIT_DRAIN_DELAY']), secs(env['DRAINIT_GRACE'])
budget = secs(app['stop_grace_period'])
check(drain + grace < budget, f'drain {drain} + grace {grace} must be below stop_grace_period {budget}')
check(secs(env['DRAINIT_STOP_TIMEOUT']) == budget, 'DRAINIT_STOP_TIMEOUT must equal stop_grace_period')
check(app['healthcheck']['test'] == ['CMD', 'drainit', 'probe'], 'healthcheck must be drainit probe')
check(app['deploy']['update_config']['order'] == 'start-first', 'start-first updates')
labels = dict(l.split('=', 1) for l in app['deploy']['labels'])
hc = 'traefik.http.services.errorpage.loadbalancer.healthcheck.'
check(labels[hc + 'path'] == '/readyz' and labels[hc + 'port'] == '8099', 'Traefik must check drainit /readyz')
react = secs(labels[hc + 'interval']) + secs(labels[hc + 'timeout'])
check(drain > react, f'drain {drain} must outlast Traefik noticing ({react} s)')
cmd = docs[0]['services']['traefik']['command']
refresh = [secs(c.split('=')[1]) for c in cmd if c.startswith('--providers.swarm.refreshSeconds=')]
check(refresh and drain > refresh[0], 'drain must outlast Traefik polling Swarm')
check(secs(app['deploy']['update_config']['delay']) > refresh[0], 'update delay must outlast the poll')
"#,
    );
}

#[test]
fn kubernetes_example_probes_drainit_and_sizes_the_grace_period() {
    check_yaml(
        "examples/kubernetes.yaml",
        r#"
dep = next(d for d in docs if d['kind'] == 'Deployment')
check(dep['apiVersion'] == 'apps/v1', 'apps/v1 Deployment')
check(dep['spec']['selector']['matchLabels'].items() <= dep['spec']['template']['metadata']['labels'].items(), 'selector matches the template')
pod = dep['spec']['template']['spec']
c = pod['containers'][0]
env = {e['name']: e['value'] for e in c['env']}
ports = {p['name']: p['containerPort'] for p in c['ports']}
check(ports.get('drainit') == 8099, 'drainit port 8099 named')
for probe, p in (('readinessProbe', '/readyz'), ('livenessProbe', '/livez')):
    get = c[probe]['httpGet']
    check(get['path'] == p and get['port'] in ('drainit', 8099), f'{probe} must GET drainit {p}')
check('lifecycle' not in c, 'no preStop hook: drainit holds SIGTERM itself')
tgps = pod['terminationGracePeriodSeconds']
drain, grace = secs(env['DRAINIT_DRAIN_DELAY']), secs(env['DRAINIT_GRACE'])
check(drain + grace < tgps, f'drain {drain} + grace {grace} must be below terminationGracePeriodSeconds {tgps}')
check(secs(env['DRAINIT_STOP_TIMEOUT']) == tgps, 'DRAINIT_STOP_TIMEOUT must equal terminationGracePeriodSeconds')
check(dep['spec']['strategy']['rollingUpdate']['maxUnavailable'] == 0, 'maxUnavailable 0')
svc = next(d for d in docs if d['kind'] == 'Service')
check(svc['spec']['selector'] == dep['spec']['selector']['matchLabels'], 'Service selects the pods')
"#,
    );
}

#[test]
fn scale_down_script_parses_and_plans() {
    let script = path("examples/scale-down.sh");
    let out = run("bash", &["-n", &script]).unwrap();
    assert!(out.status.success(), "bash -n: {}", text(&out));
    let help = run("bash", &[&script, "--help"]).unwrap();
    assert_eq!(help.status.code(), Some(2));
    assert!(text(&help).contains("--probes N"), "{}", text(&help));
    // A dry run against containers that need not exist: the plan's order.
    let plan = run("bash", &[&script, "--dry-run", "--probes", "3", "c1", "c2"]).unwrap();
    assert!(plan.status.success(), "{}", text(&plan));
    let plan = text(&plan);
    let at = |s: &str| {
        plan.find(s)
            .unwrap_or_else(|| panic!("no {s:?} in:\n{plan}"))
    };
    assert!(at("exec c1 drainit drain") < at("exec c2 drainit drain"));
    assert!(at("exec c2 drainit drain") < at("would wait for 3 unready probes"));
    assert!(at("would wait for 3") < at("stop -t 10 c1"));
    assert!(at("stop -t 10 c1") < at("rm c1"));
    let bad = run("bash", &[&script, "--probes", "x", "c1"]).unwrap();
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
}
