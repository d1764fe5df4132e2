//! Disk layouts rendered into partition/format/mount scripts.
