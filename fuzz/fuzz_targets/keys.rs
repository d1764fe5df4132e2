//! Key parsing: age recipients, ssh public and private keys, identity files (as
//! `SOPS_AGE_KEY`), and armored age files decrypted with them.
#![no_main]

use cairn::keys::{
    ssh_private_key_to_age, ssh_public_key_to_age, AgeRecipient, Identities, IdentityEnv,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ssh_private_key_to_age(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = AgeRecipient::parse(text);
    let _ = AgeRecipient::parse_list(text);
    let _ = ssh_public_key_to_age(text);
    let mut env = IdentityEnv::default();
    env.set("SOPS_AGE_KEY", text);
    let ids = Identities::discover(&env);
    let _ = ids.decrypt(data);
});
