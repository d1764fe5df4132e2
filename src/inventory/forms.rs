//! What inventory values that reach a shell script or a command line may look like. Checked
//! at the inventory boundary, so a value with shell syntax in it is a diagnostic at its
//! file:line:col instead of data a template must survive (the template renderer quotes
//! every value anyway, and refuses to place one where quoting is not enough).

/// One kind of value: its check and the allowed form, as the diagnostic says it.
pub(crate) struct Form {
    pub what: &'static str,
    pub allowed: &'static str,
    pub check: fn(&str) -> bool,
}

/// `^/dev/[A-Za-z0-9/_.:+-]+$`, without `.` or `..` components.
pub(crate) const DEVICE: Form = Form {
    what: "disk device",
    allowed: "a path under /dev made of letters, digits and `/ _ . : + -` (like \"/dev/vda\" or \"/dev/disk/by-id/nvme-eui.0025\"), without `..`",
    check: |s| {
        s.strip_prefix("/dev/").is_some_and(|rest| {
            !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.:+-".contains(&b))
                && rest.split('/').all(|c| c != "." && c != "..")
        })
    },
};

/// An absolute path of plain components: `/`, `/boot`, `/var/lib/data`.
pub(crate) const MOUNTPOINT: Form = Form {
    what: "mountpoint",
    allowed: "an absolute path made of letters, digits and `_ . + -` between single slashes (like \"/boot\" or \"/var/lib\"), without `.` or `..` components or a trailing slash",
    check: |s| {
        if s == "/" {
            return true;
        }
        let Some(rest) = s.strip_prefix('/').filter(|_| s.len() <= 255) else { return false };
        !rest.is_empty()
            && rest.split('/').all(|c| {
                c != "."
                    && c != ".."
                    && !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
            })
    },
};

/// A GPT partition name (at most 36 characters there).
pub(crate) const PARTITION_NAME: Form = Form {
    what: "partition name",
    allowed: "1 to 36 letters, digits, `-` or `_`",
    check: |s| {
        !s.is_empty()
            && s.len() <= 36
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    },
};

/// A login name as useradd accepts it by default.
pub(crate) const USERNAME: Form = Form {
    what: "user name",
    allowed: "a login name: a lowercase letter or `_`, then lowercase letters, digits, `_` or `-` (at most 32)",
    check: |s| {
        let mut b = s.bytes();
        s.len() <= 32
            && b.next().is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
    },
};

/// Plain path components: letters, digits and `_ . + @ -`, never `.` or `..`.
fn plain_components(rest: &str) -> bool {
    !rest.is_empty()
        && rest.split('/').all(|c| {
            c != "."
                && c != ".."
                && !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.+@-".contains(&b))
        })
}

/// A file on the remote side: `/etc/wireguard/wg0.key`, `/tmp/secret.key`.
pub(crate) const REMOTE_FILE: Form = Form {
    what: "remote file path",
    allowed: "an absolute path made of letters, digits and `_ . + @ -` between single slashes (like \"/etc/wireguard/wg0.key\"), without `.` or `..` components or a trailing slash",
    check: |s| s.len() <= 1024 && s.strip_prefix('/').is_some_and(plain_components),
};

/// A file or directory of the repository, relative to its root: `hosts/web1/files`.
pub(crate) const REPO_PATH: Form = Form {
    what: "repository path",
    allowed: "a path relative to the repository root made of letters, digits and `_ . + @ -` between single slashes (like \"hosts/web1/files\"), without `.` or `..` components",
    check: |s| s.len() <= 1024 && !s.starts_with('/') && plain_components(s),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices() {
        for ok in ["/dev/vda", "/dev/disk/by-id/nvme-eui.0025_38b5:1+x", "/dev/mapper/vg-root"] {
            assert!((DEVICE.check)(ok), "{ok}");
        }
        for bad in [
            "/dev/vda\nwipefs -a /dev/sda #",
            "/dev/$(reboot)",
            "/dev/vda;reboot",
            "/dev/",
            "/dev/../etc/passwd",
            "/dev/vd a",
            "/dev/vdé",
            "vda",
            "/devx/vda",
            "/dev/`id`",
        ] {
            assert!(!(DEVICE.check)(bad), "{bad:?}");
        }
    }

    #[test]
    fn mountpoints() {
        for ok in ["/", "/boot", "/boot/efi", "/var/lib/data-1"] {
            assert!((MOUNTPOINT.check)(ok), "{ok}");
        }
        for bad in ["", "boot", "/srv/", "/a b", "/a/../b", "/./a", "//a", "/a\nb", "/$(x)", "/a'b"]
        {
            assert!(!(MOUNTPOINT.check)(bad), "{bad:?}");
        }
    }

    #[test]
    fn remote_files_and_repository_paths() {
        for ok in ["/etc/wireguard/wg0.key", "/tmp/secret.key", "/var/lib/a@b+c_d-e"] {
            assert!((REMOTE_FILE.check)(ok), "{ok}");
        }
        for bad in
            ["", "/", "etc/x", "/etc/", "/etc/../shadow", "/./x", "//x", "/a b", "/a\nb", "/$(x)"]
        {
            assert!(!(REMOTE_FILE.check)(bad), "{bad:?}");
        }
        for ok in ["hosts/web1/files", "secrets/wg.yaml", "keys"] {
            assert!((REPO_PATH.check)(ok), "{ok}");
        }
        for bad in ["", "/etc", "../x", "a/../../b", "./a", "a//b", "a/", "a b", "a;b"] {
            assert!(!(REPO_PATH.check)(bad), "{bad:?}");
        }
    }

    #[test]
    fn partition_names_and_users() {
        assert!((PARTITION_NAME.check)("root-1_a"));
        for bad in ["", "a b", "a'b", "a\"b", "x$(y)", &"a".repeat(37)] {
            assert!(!(PARTITION_NAME.check)(bad), "{bad:?}");
        }
        for ok in ["root", "_svc", "deploy-1"] {
            assert!((USERNAME.check)(ok), "{ok}");
        }
        for bad in ["", "Root", "1abc", "a b", "a;b", "$(id)", "a\nb"] {
            assert!(!(USERNAME.check)(bad), "{bad:?}");
        }
    }
}
