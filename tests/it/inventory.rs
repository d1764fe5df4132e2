//! The inventory as a user meets it: every kind of mistake rendered the way the CLI renders it
//! (file:line:col, the source line, a caret, a help), the shipped examples load, and
//! variable precedence and host selection behave.

use std::path::{Path, PathBuf};

use cairn::inventory::{self, InventoryError, LoadOptions};

const FIXTURES: &str = "tests/fixtures/inventory";

fn render(err: &dyn miette::Diagnostic) -> String {
    cairn::ui::render_plain(err)
}

fn opts(path: impl Into<PathBuf>, vars: &[&str], env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        path: path.into(),
        cli_vars: vars.iter().map(|s| (*s).to_owned()).collect(),
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

/// Loads a fixture that must fail and returns the rendered report.
fn rendered_failure(name: &str) -> String {
    let path = Path::new(FIXTURES).join(format!("{name}.hcl"));
    let err = inventory::load(&opts(path, &[], &[])).expect_err("this fixture must not load");
    let text = render(&err);
    // Every problem points at a place in the file (except problems about flags).
    for p in err.problems() {
        assert!(p.line().is_some(), "problem without position: {}", p.message());
        assert!(p.help().is_some(), "problem without help: {}", p.message());
    }
    text
}

macro_rules! mistake {
    ($name:ident) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), rendered_failure(stringify!($name)));
        }
    };
}

mistake!(syntax_error);
mistake!(unknown_attribute);
mistake!(unknown_block);
mistake!(wrong_type);
mistake!(missing_required);
mistake!(duplicates);
mistake!(unknown_reference);
mistake!(secrets_rules);
mistake!(env_unset);
mistake!(file_missing);
mistake!(invalid_names);
mistake!(variables);
mistake!(disk_layout_rules);
mistake!(admins);
mistake!(state_pg);
mistake!(state_pg_no_conn);
mistake!(state_pg_name);
mistake!(state_file_name);
mistake!(provider_missing);
// Mistakes in `defaults` apply to every host but are reported once.
mistake!(defaults_errors);
mistake!(expressions);
mistake!(timeouts);
// What a host seeds besides its keys: every path checked at the boundary.
mistake!(seed_paths);

#[test]
fn all_problems_are_reported_together_in_file_order() {
    let err = inventory::load(&opts(Path::new(FIXTURES).join("unknown_attribute.hcl"), &[], &[]))
        .expect_err("fixture has mistakes");
    let lines: Vec<usize> = err.problems().iter().map(|p| p.line().unwrap()).collect();
    assert_eq!(lines, vec![3, 7, 10], "{}", render(&err));
}

#[test]
fn unreadable_inventory_names_its_path() {
    let err = inventory::load(&opts("tests/fixtures/inventory/nope/cairn.hcl", &[], &[]))
        .expect_err("no such file");
    assert!(matches!(err, InventoryError::Read { .. }));
    let text = render(&err);
    assert!(text.contains("tests/fixtures/inventory/nope/cairn.hcl"), "{text}");
}

/// Every example and scaffold inventory shipped in the repository must load.
#[test]
fn shipped_inventories_load() {
    let mut files = Vec::new();
    collect_named(Path::new("examples"), "cairn.hcl", &mut files);
    let template = Path::new("templates/init/cairn.hcl");
    if template.is_file() {
        files.push(template.to_path_buf());
    }
    assert!(
        files.iter().any(|f| f.ends_with("examples/inventory/cairn.hcl")),
        "examples/inventory/cairn.hcl must exist, found {files:?}"
    );
    // Shipped inventories read provider credentials from the environment, as users' do.
    let credentials = [
        ("HCLOUD_TOKEN", "example-token"),
        ("AWS_ACCESS_KEY_ID", "example-id"),
        ("AWS_SECRET_ACCESS_KEY", "example-secret"),
        ("CAIRN_PG_CONN", "postgres://localhost/cairn"),
    ];
    for file in &files {
        if let Err(e) = inventory::load(&opts(file, &[], &credentials)) {
            panic!("{} does not load:\n{}", file.display(), render(&e));
        }
    }
}

fn collect_named(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs_err::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_named(&path, name, out);
        } else if path.file_name().is_some_and(|n| n == name) {
            out.push(path);
        }
    }
}

#[test]
fn example_inventory_resolves_to_the_expected_model() {
    let inv = inventory::load(&opts(
        "examples/inventory/cairn.hcl",
        &[],
        &[("HCLOUD_TOKEN", "hunter2-token")],
    ))
    .expect("example loads");
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["web1", "web2", "db1", "builder", "testvm"]);

    let web1 = inv.host("web1").unwrap();
    assert_eq!(web1.provider.as_str(), "cloud");
    assert_eq!(web1.flake.as_ref().unwrap().to_string(), ".#web1");
    assert_eq!(web1.size.as_deref(), Some("cx22"), "size comes from defaults");
    assert_eq!(web1.location.as_deref(), Some("fsn1"), "variable default");
    let tags: Vec<&str> = web1.tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["nixos", "prod", "web"], "defaults' tags unioned with the host's");
    assert_eq!(web1.ssh.user, "root");
    assert_eq!(web1.health_checks.len(), 2, "defaults' check plus the host's");

    let db1 = inv.host("db1").unwrap();
    assert_eq!(db1.size.as_deref(), Some("cx32"), "server_type is an alias of size");
    assert_eq!(db1.flake.as_ref().unwrap().to_string(), ".#db1", "flake defaults to .#<name>");

    let builder = inv.host("builder").unwrap();
    assert_eq!(inv.provider_of(builder).kind, inventory::ProviderKind::Existing);
    assert_eq!(builder.ssh.port, 2222);
    assert_eq!(builder.flake.as_ref().unwrap().flake, "github:example/fleet");
    assert!(builder.install.installer.is_some());

    let vm = inv.host("testvm").unwrap();
    assert_eq!(vm.vm.memory_mib, Some(4096));
    assert_eq!(vm.vm.disk_size_mib, Some(20480));
    assert_eq!(inv.providers[vm.provider.as_str()].qemu().unwrap().vm.memory_mib, Some(2048));

    let cloud = &inv.providers["cloud"];
    assert_eq!(cloud.hcloud().unwrap().token.as_ref().unwrap().0, "hunter2-token");
    assert_eq!(cloud.hcloud().unwrap().ssh_key_name.as_deref(), Some("cairn-prod"));
    let debug = format!("{inv:?}");
    assert!(!debug.contains("hunter2"), "the token must not appear in Debug output");
    let json = serde_json::to_string(&inv).unwrap();
    assert!(!json.contains("hunter2"), "the token must not appear in JSON output");

    let standard = &inv.disk_layouts["standard"];
    assert_eq!(standard.partitions.last().unwrap().size, inventory::PartitionSize::Rest);
    let esp = &inv.disk_layouts["vm"].partitions[0];
    assert_eq!(esp.filesystem, Some(inventory::Filesystem::Vfat));
    assert_eq!(esp.mountpoint.as_deref(), Some("/boot"));
    assert_eq!(inv.admins.len(), 2);
    assert_eq!(inv.secrets.len(), 3);
}

/// A wait's deadline (and a command budget) comes from the host's own `timeouts`, else its
/// provider's, else the defaults'; one set nowhere is left to cairn's default.
#[test]
fn timeouts_resolve_host_over_provider_over_defaults() {
    let text = r#"
provider "qemu" "slow" {
  timeouts {
    kexec  = "20m"
    reboot = "30m"
  }
}
provider "existing" "metal" {}
defaults {
  timeouts {
    reach  = "2m"
    kexec  = "3m"
  }
}
host "vm" {
  provider = "slow"
  timeouts {
    reboot = "1h30m"
    disk   = "30m"
  }
}
host "box" {
  provider = "metal"
  address  = "192.0.2.1"
}
"#;
    let inv = inventory::load_str(&opts("inline/cairn.hcl", &[], &[]), text.to_owned())
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    let secs = |host: &str, wait: inventory::Wait| {
        inv.host(host).unwrap().timeouts.get(wait).map(|d| d.as_secs())
    };
    use inventory::Wait::*;
    assert_eq!(secs("vm", Reboot), Some(5400), "the host's own");
    assert_eq!(secs("vm", Kexec), Some(1200), "the provider's over the defaults'");
    assert_eq!(secs("vm", Reach), Some(120), "the defaults'");
    assert_eq!(secs("vm", Verify), None, "unset: cairn's default");
    assert_eq!(secs("box", Kexec), Some(180));
    assert_eq!(secs("box", Reboot), None);
    // Command budgets sit next to the waits and resolve the same way.
    let disk = |host: &str| inv.host(host).unwrap().timeouts.get(inventory::Budget::Disk);
    assert_eq!(disk("vm").map(|d| d.as_secs()), Some(1800));
    assert_eq!(disk("box"), None);
}

const PRECEDENCE: &str = r#"
variable "location" {
  default = "fsn1"
}
provider "hcloud" "cloud" {
  location = var.location
}
"#;

fn location(vars: &[&str], env: &[(&str, &str)]) -> String {
    let inv = inventory::load_str(&opts("inline/cairn.hcl", vars, env), PRECEDENCE.to_owned())
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    inv.providers["cloud"].hcloud().unwrap().location.clone().unwrap()
}

#[test]
fn variable_precedence_flag_over_env_over_default() {
    assert_eq!(location(&[], &[]), "fsn1");
    assert_eq!(location(&[], &[("CAIRN_VAR_location", "nbg1")]), "nbg1");
    assert_eq!(location(&["location=hel1"], &[("CAIRN_VAR_location", "nbg1")]), "hel1");
    assert_eq!(location(&["location=hel1"], &[]), "hel1");
}

#[test]
fn bad_var_flags_are_reported() {
    let err = inventory::load_str(
        &opts("inline/cairn.hcl", &["locaton=hel1", "novalue"], &[]),
        PRECEDENCE.to_owned(),
    )
    .expect_err("both flags are wrong");
    insta::assert_snapshot!("bad_var_flags", render(&err));
}

#[test]
fn typed_variables_convert_flag_values() {
    let src = r#"
variable "cpus" {
  type = number
}
provider "qemu" "local" {
  cpus = var.cpus
}
"#;
    let inv = inventory::load_str(&opts("inline/cairn.hcl", &["cpus=4"], &[]), src.to_owned())
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    assert_eq!(inv.providers["local"].qemu().unwrap().vm.cpus, Some(4));
    let err = inventory::load_str(&opts("inline/cairn.hcl", &["cpus=four"], &[]), src.to_owned())
        .expect_err("not a number");
    insta::assert_snapshot!("typed_variable_bad_flag", render(&err));
}

#[test]
fn install_settings_come_from_the_host_then_defaults_then_its_provider() {
    let src = r#"
provider "existing" "manual" {
  installer            = "provider.tar.gz"
  installer_min_memory = "2G"
  copy                 = "nix-copy"
}
defaults {
  copy  = "stream"
  kexec = false
}
host "a" {
  address = "192.0.2.1"
  age_key = true
}
host "b" {
  address   = "192.0.2.2"
  installer = "own.tar.gz"
  disko     = true
  kexec     = true
}
"#;
    let inv = inventory::load_str(&opts("inline/cairn.hcl", &[], &[]), src.to_owned())
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    let a = &inv.host("a").unwrap().install;
    assert_eq!(a.installer.as_deref(), Some("provider.tar.gz"));
    assert_eq!(a.installer_min_memory, Some(2048));
    assert_eq!(a.copy, Some(inventory::CopyStrategy::Stream), "defaults win over the provider");
    assert!(a.age_key && !a.disko);
    assert_eq!(a.kexec, Some(false), "a rescue-system fleet says so once, in defaults");
    let b = &inv.host("b").unwrap().install;
    assert_eq!(b.installer.as_deref(), Some("own.tar.gz"));
    assert!(b.disko && !b.age_key);
    assert_eq!(b.kexec, Some(true));
}

/// What a host seeds: `extra_files` from the host, else the defaults; the blocks of both, the
/// host's winning on the same path; modes octal, owners numeric (root by name).
#[test]
fn seeded_files_come_from_the_host_and_the_defaults() {
    let src = r#"
provider "existing" "manual" {}
defaults {
  extra_files = "common/files"
  extra_file "/etc/motd" {
    file = "common/motd"
  }
  extra_file "/etc/wireguard/wg0.key" {
    sops = "secrets/common.yaml"
  }
}
host "a" {
  address = "192.0.2.1"
  extra_file "/etc/wireguard/wg0.key" {
    sops  = "secrets/a.yaml"
    key   = ["wireguard", "wg0"]
    mode  = "0440"
    owner = "root"
    group = 998
  }
  disk_encryption_key "/tmp/secret.key" {
    file = "/run/keys/a-disk.key"
  }
}
host "b" {
  address     = "192.0.2.2"
  extra_files = "hosts/b/files"
}
"#;
    use inventory::{DiskKey, SeedFile, SeedSource};
    let inv = inventory::load_str(&opts("inline/cairn.hcl", &[], &[]), src.to_owned())
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    let a = &inv.host("a").unwrap().seed;
    assert_eq!(a.extra_files, Some(PathBuf::from("common/files")));
    assert_eq!(
        a.files,
        [
            SeedFile {
                path: "/etc/motd".into(),
                source: SeedSource::File { path: "common/motd".into() },
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
            SeedFile {
                path: "/etc/wireguard/wg0.key".into(),
                source: SeedSource::Sops {
                    path: "secrets/a.yaml".into(),
                    key: vec!["wireguard".into(), "wg0".into()],
                },
                mode: 0o440,
                uid: 0,
                gid: 998,
            },
        ]
    );
    assert_eq!(
        a.disk_keys,
        [DiskKey {
            path: "/tmp/secret.key".into(),
            source: SeedSource::File { path: "/run/keys/a-disk.key".into() },
        }]
    );
    let b = &inv.host("b").unwrap().seed;
    assert_eq!(b.extra_files, Some(PathBuf::from("hosts/b/files")));
    assert_eq!(b.files.len(), 2, "the defaults' files");
    assert!(b.disk_keys.is_empty());
}

#[test]
fn env_function_reads_the_given_environment() {
    let src = r#"
provider "hcloud" "cloud" {
  token    = env("HCLOUD_TOKEN")
  endpoint = env("HCLOUD_ENDPOINT", "https://api.hetzner.cloud/v1")
}
"#;
    let inv = inventory::load_str(
        &opts("inline/cairn.hcl", &[], &[("HCLOUD_TOKEN", "t0ken")]),
        src.to_owned(),
    )
    .unwrap_or_else(|e| panic!("{}", render(&e)));
    let p = &inv.providers["cloud"];
    let hcloud = p.hcloud().unwrap();
    assert_eq!(hcloud.token.as_ref().unwrap().0, "t0ken");
    assert_eq!(hcloud.endpoint.as_deref(), Some("https://api.hetzner.cloud/v1"));
    let shown = format!("{p:?} {}", serde_json::to_string(p).unwrap());
    assert!(!shown.contains("t0ken"), "credentials never land in settings");
}

#[test]
fn single_provider_may_be_omitted_and_discover_walks_up() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    fs_err::create_dir_all(&nested).unwrap();
    fs_err::write(
        dir.path().join("cairn.hcl"),
        "provider \"existing\" \"owned\" {}\nhost \"box\" {\n  address = \"192.0.2.1\"\n}\n",
    )
    .unwrap();
    let found = inventory::discover(&nested).expect("found in a parent");
    assert_eq!(found, dir.path().join("cairn.hcl"));
    assert_eq!(inventory::discover(Path::new("/proc/self")), None);
    assert_eq!(inventory::locate(&nested, None).unwrap(), found);
    assert_eq!(inventory::locate(&nested, Some(Path::new("x.hcl"))).unwrap(), nested.join("x.hcl"));
    let err = inventory::locate(Path::new("/proc/self"), None).expect_err("nothing there");
    assert_eq!(
        render(&err).trim_end(),
        "  × no cairn.hcl in /proc/self or any parent directory\n  help: run `cairn init` to create one, or pass `--inventory PATH`"
    );
    let inv = inventory::load(&opts(&found, &[], &[])).unwrap_or_else(|e| panic!("{}", render(&e)));
    assert_eq!(inv.hosts[0].provider.as_str(), "owned");
    assert_eq!(inv.root, dir.path());
}

#[test]
fn file_function_reads_relative_to_the_inventory() {
    let src = r#"
admin "alice" {
  age = trimspace(file("keys/alice.age.pub"))
}
"#;
    let err = inventory::load_str(
        &opts(Path::new(FIXTURES).join("inline.hcl"), &[], &[]),
        src.to_owned(),
    )
    .expect_err("trimspace is not a cairn function");
    assert_eq!(err.problems()[0].message(), "unknown function `trimspace`");

    let src = r#"
admin "alice" {
  age = "${file("keys/alice.age.pub")}"
}
"#;
    // The file ends with a newline; recipients are trimmed.
    let inv = inventory::load_str(
        &opts(Path::new(FIXTURES).join("inline.hcl"), &[], &[]),
        src.to_owned(),
    )
    .unwrap_or_else(|e| panic!("{}", render(&e)));
    assert_eq!(inv.admins[0].age, "age1l4j587397etm0czenpy3xwkra2r5p929ztcpr3h3v89gvf3wgvmqnnlq2d");
}

/// Odd but possible inputs: each loads or fails with positioned problems, never panics.
#[test]
fn odd_inputs_never_panic() {
    let cases = [
        "",
        "# only a comment\n",
        "host web1 {}\n",
        "provider \"existing\" \"x\" {}\r\nhost \"a\" {\r\n  address = \"1\"\r\n  sise = 1\r\n}\r\n",
        "host \"ü\" {\n  tags = [\"ünïcode\"]\n}\n",
        "locals {\n  x = <<EOT\n  heredoc ${env(\"NOPE\")}\n  EOT\n}\n",
        "locals {\n  a = { for k, v in { x = 1 } : k => v + local.b }\n  b = 1\n}\n",
        "locals {\n  a = [for s in [\"x\"] : upper(s)]\n}\n",
        "locals {\n  a = local.a\n}\n",
        "host \"x\" \"y\" {}\nprovider {}\nprovider \"qemu\" {}\ndisk_layout {}\n",
        "host \"x\" {\n  health_check \"nope\" {}\n  health_check {}\n}\n",
        "variable \"v\" {\n  type = list(string)\n}\n",
        "state {\n  backend = \"file\"\n  conn = \"x\"\n}\n",
        "{",
        "host \"x\" {\n  ssh = { user = \"a\" }\n}\n",
    ];
    for (i, text) in cases.iter().enumerate() {
        let o = opts(format!("odd/{i}.hcl"), &["v=[\"a\"]"], &[]);
        if let Err(e) = inventory::load_str(&o, (*text).to_owned()) {
            for p in e.problems() {
                assert!(p.help().is_some(), "case {i}: no help for {}", p.message());
                assert!(
                    p.line().is_some() || p.message().contains("--var"),
                    "case {i}: no position for {}",
                    p.message()
                );
            }
            let _ = render(&e);
        }
    }
}

/// The HCL snippets in the language reference are valid HCL.
#[test]
fn reference_snippets_parse() {
    let doc = fs_err::read_to_string("docs/inventory.md").expect("docs/inventory.md");
    let snippets: Vec<&str> =
        doc.split("```hcl\n").skip(1).map(|s| s.split("```").next().unwrap_or_default()).collect();
    assert!(snippets.len() >= 3, "found {} snippets", snippets.len());
    for s in snippets {
        if let Err(e) = hcl_edit::parser::parse_body(s) {
            panic!("snippet does not parse: {e}\n{s}");
        }
    }
}

#[test]
fn syntax_errors_point_at_the_likely_cause() {
    let cases = [
        ("unclosed_block", "host \"web1\" {\n  size = \"cx22\"\n\nhost \"web2\" {\n}\n"),
        ("missing_equals", "host \"web1\" {\n  size \"cx22\"\n}\n"),
        ("list_without_commas", "host \"web1\" {\n  tags = [\"a\" \"b\"]\n}\n"),
        ("single_quotes", "host \"web1\" {\n  size = 'cx22'\n}\n"),
    ];
    let mut out = String::new();
    for (name, text) in cases {
        let err = inventory::load_str(&opts(format!("{name}.hcl"), &[], &[]), text.to_owned())
            .expect_err("syntax error");
        out.push_str(&render(&err));
        out.push('\n');
    }
    insta::assert_snapshot!("syntax_error_hints", out);
}

#[test]
fn load_options_debug_shows_no_values() {
    let o = opts("cairn.hcl", &["token=s3cret-flag"], &[("HCLOUD_TOKEN", "s3cret-env")]);
    let debug = format!("{o:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("HCLOUD_TOKEN") && debug.contains("token"), "{debug}");
}
