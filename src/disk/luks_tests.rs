//! An encrypted partition (`luks_key`, issue 14, item 11): LUKS2 with the key file the host
//! seeded into the installer's RAM, opened, and its filesystem made and mounted inside the
//! mapping. The whole run is in `tests/vm/luks.rs`.

use super::tests::{render, uefi};
use super::*;

fn encrypted_data() -> DiskLayout {
    let mut layout = uefi();
    let root = layout.partitions.pop().unwrap();
    layout.partitions.push(Partition { size: PartitionSize::Mib(2048), ..root });
    layout.partitions.push(Partition {
        name: "data".into(),
        kind: PartitionKind::Filesystem,
        size: PartitionSize::Rest,
        filesystem: Some(Filesystem::Ext4),
        label: Some("data".into()),
        mountpoint: Some("/srv/data".into()),
        luks_key: Some("/tmp/secret.key".into()),
    });
    layout
}

#[test]
fn an_encrypted_partition_is_opened_before_its_filesystem_is_made_and_mounted() {
    let s = render(&encrypted_data());
    let order = [
        "\ncheck_part 3 0\n",
        "\nluks_format 3 /tmp/secret.key crypt-data\n",
        "\nformat_ext4 3 data\n",
        "\nmount_part 3 /srv/data ext4 ''\n",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|n| s.find(n).unwrap_or_else(|| panic!("{n:?} is not in the script:\n{s}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {order:?} at {at:?}");
    // The plain partitions are formatted where they are.
    assert!(s.contains("\nformat_ext4 2 nixos\n"), "{s}");
    assert!(!s.contains("luks_format 2"), "{s}");
}

#[test]
fn only_filesystem_partitions_are_encrypted() {
    let mut layout = encrypted_data();
    layout.partitions[0].luks_key = Some("/tmp/secret.key".into());
    let err = render_script(&layout, &ScriptOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "disk layout `test`, partition `ESP`: only a filesystem partition can be encrypted"
    );
}

/// The script's functions run in a shell: `dev` names the mapping once luks_format has
/// opened one, the partition otherwise.
#[test]
fn dev_names_the_mapping_of_an_opened_partition() {
    let s = render(&encrypted_data());
    let start = s.find("\npart() {").unwrap();
    let end = s[start..].find("\n}\n").unwrap() + start + 3;
    let dev_start = s.find("\ndev() {").unwrap();
    let dev_end = s[dev_start..].find("\n}\n").unwrap() + dev_start + 3;
    let probe = format!(
        "disk=/dev/vda\n{}{}echo \"$(dev 2)\"\ncrypt_3=/dev/mapper/crypt-data\necho \"$(dev 3)\"\n",
        &s[start..end],
        &s[dev_start..dev_end]
    );
    let out = std::process::Command::new("sh").arg("-c").arg(&probe).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/dev/vda2\n/dev/mapper/crypt-data\n");
}

/// A key in the installer's RAM could be paged out to a swap partition the script turned on:
/// the swap is made, but left off until the installed system boots.
#[test]
fn swap_stays_off_while_a_disk_key_is_in_ram() {
    let with_swap = super::tests::grub_bios_with_swap();
    let plain = render(&with_swap);
    assert!(plain.contains("\nswap_on 2\n"), "{plain}");
    let opts = ScriptOptions { keys_in_ram: true, ..ScriptOptions::default() };
    let keyed = render_script(&with_swap, &opts).unwrap();
    assert!(keyed.contains("\nformat_swap 2 swap\n"), "{keyed}");
    assert!(!keyed.contains("\nswap_on "), "{keyed}");
    assert!(keyed.contains("not turning on swap swap while a disk key is in RAM"), "{keyed}");
}
