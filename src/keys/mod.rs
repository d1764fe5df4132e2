//! age and SSH key generation, identity discovery, and the ssh-to-age conversion.
