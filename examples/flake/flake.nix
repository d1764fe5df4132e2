{
  description = "An example fleet managed by cairn: one web server, web1";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    sops-nix = {
      url = "github:Mic92/sops-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    comin = {
      url = "github:nlewo/comin";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, sops-nix, comin, ... }:
    let
      # One function per host keeps every host on the same module set; cairn builds
      # nixosConfigurations.<host>.config.system.build.toplevel.
      mkHost = name: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        specialArgs = { inherit self; };
        modules = [
          sops-nix.nixosModules.sops
          comin.nixosModules.comin
          ./modules/common.nix
          ./modules/network.nix
          ./hosts/${name}.nix
          { networking.hostName = name; }
        ];
      };
    in
    {
      nixosConfigurations.web1 = mkHost "web1";
    };
}
