# The uplink: IPv4 from DHCP, IPv6 as the provider assigned it. Hetzner Cloud routes a /64
# to each server with no DHCPv6, so its address and the gateway fe80::1 must be configured
# statically, or an IPv6-only server never answers after install. cairn writes them into
# cairn/network.json (commit it) when `cairn apply` or `cairn bootstrap` records a machine.
{ config, lib, ... }:
let
  file = ../cairn/network.json;
  network =
    if builtins.pathExists file
    then builtins.fromJSON (builtins.readFile file)
    else { hosts = { }; };
  me = network.hosts.${config.networking.hostName} or null;
  # A host with a static IPv6 (hcloud); elsewhere (aws, qemu) router advertisements or
  # DHCPv6 configure it.
  static6 = me != null && me.ipv6 != null && me.gateway6 != null;
in
{
  networking.useNetworkd = true;
  systemd.network.networks."10-uplink" = {
    matchConfig.Name = "en* eth*";
    networkConfig.DHCP = if static6 then "ipv4" else "yes";
    address = lib.optional static6 me.ipv6;
    # fe80::1 is link-local: on-link by definition, said explicitly for networkd.
    routes = lib.optional static6 {
      Gateway = me.gateway6;
      GatewayOnLink = true;
    };
  };
}
