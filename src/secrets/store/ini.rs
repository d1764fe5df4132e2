//! INI as sops (go-ini) reads and writes it.

use crate::secrets::tree::Map;

pub fn parse(_text: &str) -> Result<Map, String> {
    Err("INI files are not supported yet".into())
}

pub fn emit(_map: &Map, _meta: Option<&[(String, String)]>) -> Result<String, String> {
    Err("INI files are not supported yet".into())
}
