{
  description = "A NixOS fleet managed by cairn";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # Decrypts secrets/<host>.yaml on the host with the SSH host key cairn seeds.
    sops-nix = {
      url = "github:Mic92/sops-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # Pulls this repository and switches the host to its own configuration.
    comin = {
      url = "github:nlewo/comin";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, sops-nix, comin, ... }:
    let
      # What every host shares. cairn builds
      # nixosConfigurations.<host>.config.system.build.toplevel.
      common = { config, lib, pkgs, ... }: {
        # The "vm" disk layout in cairn.hcl: filesystems by label, so device names may
        # change between boots.
        fileSystems."/" = {
          device = "/dev/disk/by-label/nixos";
          fsType = "ext4";
        };
        fileSystems."/boot" = {
          device = "/dev/disk/by-label/ESP";
          fsType = "vfat";
          options = [ "umask=0077" ];
        };

        # GRUB in the BIOS boot partition and, as a removable EFI binary, on the ESP.
        boot.loader.grub = {
          enable = true;
          device = "/dev/vda"; # the disk_layout device in cairn.hcl
          efiSupport = true;
          efiInstallAsRemovable = true;
        };
        boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_scsi" "virtio_net" "ahci" "sd_mod" ];
        # Boot messages on the screen and on the serial port (provider consoles show them).
        boot.kernelParams = [ "console=tty0" "console=ttyS0,115200" ];

        # cairn generates this key before install and checks that the installed host
        # presents it.
        services.openssh = {
          enable = true;
          settings.PasswordAuthentication = false;
          hostKeys = [{ path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; }];
        };
        # Your SSH public key, to log in as root:
        # users.users.root.openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAA... you@laptop" ];

        # sops-nix decrypts with the host's SSH key (converted to an age key).
        sops = lib.mkIf (builtins.pathExists ./secrets/${config.networking.hostName}.yaml) {
          defaultSopsFile = ./secrets/${config.networking.hostName}.yaml;
          age.sshKeyPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
        };

        nix.settings.experimental-features = [ "nix-command" "flakes" ];
        system.stateVersion = "25.11";
      };

      # comin pulls this repository and switches the host to its own configuration. Once
      # cairn.hcl has `gitops` and `ring` blocks, `cairn gitops sync` writes
      # cairn/fleet.json (commit it) and each host follows its ring's branch, which
      # `cairn promote` moves; until then, point comin at where you push this repository.
      gitops = { config, lib, ... }:
        let
          fleet =
            if builtins.pathExists ./cairn/fleet.json
            then builtins.fromJSON (builtins.readFile ./cairn/fleet.json)
            else { hosts = { }; };
          me = fleet.hosts.${config.networking.hostName} or null;
          hasToken = me != null && me.token_sops_file != null;
        in
        {
          services.comin = if me == null then {
            enable = true;
            remotes = [{
              name = "origin";
              url = "https://git.example.com/you/fleet.git";
              branches.main.name = "main";
            }];
          } else {
            enable = true;
            remotes = [{
              name = me.remote_name;
              url = me.remote_url;
              branches.main.name = me.branch;
              auth.access_token_path = lib.mkIf hasToken config.sops.secrets."comin-token".path;
            }];
            # comin deploys only where /etc/machine-id matches (null: not read yet).
            machineId = me.machine_id;
          };
          # The read token: a sops secret this host may read (cairn.hcl's `token`).
          sops.secrets = lib.mkIf hasToken {
            "comin-token" = {
              sopsFile = ./. + "/${me.token_sops_file}";
              key = me.token_sops_key;
            };
          };
        };

      # The uplink: IPv4 from DHCP, IPv6 as the provider assigned it. Hetzner Cloud's IPv6
      # is static (no DHCPv6, gateway fe80::1): cairn writes each host's addresses into
      # cairn/network.json (commit it) when `cairn apply` or `cairn bootstrap` records its
      # machine.
      network = { config, lib, ... }:
        let
          file = ./cairn/network.json;
          addresses =
            if builtins.pathExists file
            then builtins.fromJSON (builtins.readFile file)
            else { hosts = { }; };
          me = addresses.hosts.${config.networking.hostName} or null;
          static6 = me != null && me.ipv6 != null && me.gateway6 != null;
        in
        {
          networking.useNetworkd = true;
          systemd.network.networks."10-uplink" = {
            matchConfig.Name = "en* eth*";
            networkConfig.DHCP = if static6 then "ipv4" else "yes";
            address = lib.optional static6 me.ipv6;
            routes = lib.optional static6 {
              Gateway = me.gateway6;
              GatewayOnLink = true;
            };
          };
        };

      mkHost = name: modules: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          sops-nix.nixosModules.sops
          comin.nixosModules.comin
          common
          network
          gitops
          { networking.hostName = name; }
        ] ++ modules;
      };
    in
    {
      nixosConfigurations.web1 = mkHost "web1" [
        ({ pkgs, ... }: {
          services.nginx.enable = true;
          networking.firewall.allowedTCPPorts = [ 22 80 ];
        })
      ];
    };
}
