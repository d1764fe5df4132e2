# web1: a small web server.
{ pkgs, ... }:
{
  services.nginx = {
    enable = true;
    virtualHosts.default = {
      default = true;
      root = pkgs.writeTextDir "index.html" "<h1>web1, installed by cairn</h1>\n";
    };
  };
  networking.firewall.allowedTCPPorts = [ 22 80 ];
}
