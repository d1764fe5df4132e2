{
  description = "cairn VM tests: a small bootable system, built offline from Debian binaries";

  # Everything binary comes in through one path input that vm-tests/build-test-system
  # prepares and passes with `--override-input deps path:DIR` (see README.md for its layout).
  inputs.deps = {
    url = "path:./deps-not-prepared";
    flake = false;
  };

  outputs = { self, deps }:
    let
      system = "x86_64-linux";
      # A static busybox is the only builder: argv[0] must end in `busybox`.
      bb = "${deps}/busybox/busybox";
      run = name: env: script:
        derivation ({
          inherit name system;
          builder = bb;
          args = [ "sh" "-eu" "-c" script ];
        } // env);
      # patchelf from the deps runs through the dynamic loader it was shipped with.
      patchelf = "${deps}/patchelf/lib/ld-linux-x86-64.so.2 --library-path ${deps}/patchelf/lib ${deps}/patchelf/bin/patchelf";

      busybox = run "busybox-static" { } ''
        mkdir -p $out/bin
        cp ${deps}/busybox/busybox $out/bin/busybox
        chmod 555 $out/bin/busybox
        for a in $($out/bin/busybox --list); do
          [ "$a" = busybox ] || ln -s busybox $out/bin/$a
        done
      '';

      # Debian binaries with the libraries they load, made self-contained: the interpreter
      # and the search path point into the output itself.
      bundle = name: run name { src = "${deps}/${name}"; } ''
        mkdir -p $out
        cp -a $src/. $out/
        chmod -R u+w $out
        for f in $out/bin/*; do
          [ -L "$f" ] && continue
          ${patchelf} --set-interpreter $out/lib/ld-linux-x86-64.so.2 --force-rpath --set-rpath $out/lib "$f"
        done
        for f in $out/lib/*; do
          case $f in */ld-linux*) continue ;; esac
          if [ -n "$(${patchelf} --print-rpath "$f")" ]; then
            ${patchelf} --set-rpath $out/lib "$f"
          fi
        done
      '';
      dropbear = bundle "dropbear";
      nix = bundle "nix";
      extlinux = bundle "extlinux";

      sops = run "sops" { } ''
        mkdir -p $out/bin
        cp ${deps}/sops/sops $out/bin/sops
        chmod 555 $out/bin/sops
      '';

      kernel = run "linux-kernel" { } ''
        mkdir -p $out
        cp ${deps}/kernel/bzImage $out/bzImage
        cp -r ${deps}/kernel/modules $out/modules
      '';

      subst = ''
        subst() {
          sed -e "s|@out@|$out|g" -e "s|@busybox@|${busybox}|g" -e "s|@dropbear@|${dropbear}|g" \
              -e "s|@sops@|${sops}|g" -e "s|@extlinux@|${extlinux}|g" "$1" > "$2"
          chmod 555 "$2"
        }
      '';

      initrd = run "initrd" { } ''
        ${subst}
        mkdir -p root/bin root/dev root/proc root/sys root/sysroot root/lib/modules
        cp ${busybox}/bin/busybox root/bin/busybox
        for a in sh mount umount insmod switch_root findfs sleep cat mkdir echo ls; do
          ln -s busybox root/bin/$a
        done
        cp ${kernel}/modules/*.ko ${kernel}/modules/load-order root/lib/modules/
        mknod root/dev/console c 5 1 2>/dev/null || true
        subst ${./stage-1-init.sh} root/init
        mkdir -p $out
        (cd root && find . | cpio -o -H newc 2>/dev/null) | gzip -9 > $out/initrd
      '';

      # The system, with the sops-encrypted files in `secrets` (a directory, or null for
      # those in deps/secrets): like sops-nix's defaultSopsFile, they live in the store, so
      # a fleet passes its own ./secrets and every build sees their current recipients.
      # `comin`: null, or `{ remote; branch; interval ? 5; }` for the comin stand-in
      # (comin.sh), as a fleet's flake sets services.comin from its cairn/fleet.json.
      mkToplevel = { secrets ? null, hostname ? "cairn-test", comin ? null }: run "cairn-test-system" { } ''
        ${subst}
        mkdir -p $out/bin $out/sw/bin $out/etc/ssh $out/secrets
        subst ${./stage-2-init.sh} $out/init
        subst ${./activate.sh} $out/activate
        subst ${./agent.sh} $out/agent
        subst ${./udhcpc.sh} $out/udhcpc.script
        subst ${./switch-to-configuration.sh} $out/bin/switch-to-configuration
        ln -s ${kernel}/bzImage $out/kernel
        ln -s ${initrd}/initrd $out/initrd
        echo "console=ttyS0 panic=10" > $out/kernel-params
        for a in $(${busybox}/bin/busybox --list); do ln -s ${busybox}/bin/busybox $out/sw/bin/$a; done
        for f in ${dropbear}/bin/* ${extlinux}/bin/* ${sops}/bin/*; do ln -sf "$f" $out/sw/bin/; done
        ln -sf ${nix}/bin/nix $out/sw/bin/nix
        ln -sf ${nix}/bin/nix $out/sw/bin/nix-store
        cp ${deps}/ssh/authorized_keys $out/etc/ssh/authorized_keys
        ${if secrets == null then ''
          if [ -d ${deps}/secrets ]; then cp ${deps}/secrets/* $out/secrets/ 2>/dev/null || true; fi
        '' else ''
          for f in ${secrets}/*; do [ -f "$f" ] && cp "$f" $out/secrets/; done
        ''}
        echo ${hostname} > $out/hostname
        ${if comin == null then "" else ''
          subst ${./comin.sh} $out/sw/bin/comin
          subst ${./systemctl.sh} $out/sw/bin/systemctl
          cat > $out/etc/comin.conf <<'CONF'
        remote='${comin.remote}'
        branch='${comin.branch}'
        interval=${toString (comin.interval or 5)}
        CONF
        ''}
      '';
      toplevel = mkToplevel { };
    in
    {
      # The same attribute path as a NixOS system, so cairn builds and installs both alike.
      nixosConfigurations.cairn-test.config.system.build.toplevel = toplevel;
      lib.mkToplevel = mkToplevel;
      # A flake's `diskoScript` from a partition script (an executable in the store), for
      # hosts with `disko = true`: the VM test passes cairn's own rendered script.
      lib.mkDiskoScript = script: run "disko-script" { } ''
        cp ${script} $out
        chmod 555 $out
      '';
      packages.${system} = {
        default = toplevel;
        inherit busybox dropbear nix extlinux sops kernel initrd toplevel;
      };
    };
}
