# bash completion for kata-deploy, kata-deploy-agent and kata-build (installed by make install
# into share/bash-completion/completions/, one name per program).

_kata_deploy() {
	local cur prev verb
	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	local verbs="install plan uninstall rollback status recover check payload version help"
	local common="--root --prefix --state-dir --lock-timeout --log-level --log-json --quiet --help"
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "$verbs --version --help" -- "$cur"))
		return
	fi
	verb=${COMP_WORDS[1]}
	case $prev in
	--root | --prefix | --state-dir | --custom-configs | --modules-dir)
		COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--payload | --public-key | --signature | --config | --runtime-binary | --spec | --sign | \
		--sign-pubkey | --qemu | -o | --output-file)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--log-level) COMPREPLY=($(compgen -W "error warning info debug" -- "$cur")); return ;;
	--output) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
	--runtime) COMPREPLY=($(compgen -W "containerd crio auto none" -- "$cur")); return ;;
	--distribution) COMPREPLY=($(compgen -W "k8s k3s rke2 k0s microk8s auto" -- "$cur")); return ;;
	--restart) COMPREPLY=($(compgen -W "systemd none command:" -- "$cur")); return ;;
	--shims) COMPREPLY=($(compgen -W "qemu clh fc dragonball qemu-runtime-rs cloud-hypervisor" -- "$cur")); return ;;
	esac
	local opts=$common
	case $verb in
	install | plan)
		opts+=" --payload --sha256 --shims --public-key --signature --insecure --arch
			--registry-auth --plain-http --blob-cache --registry-ca --runtime
			--runtime-version --runtime-binary --distribution --config --restart --suffix
			--debug --devkit --agent-https-proxy --agent-no-proxy
			--allowed-hypervisor-annotations --snapshotter-handler-mapping --pull-type-mapping
			--custom-configs --custom-runtimes"
		[ "$verb" = install ] && opts+=" --output --skip-missing-shims" ;;
	uninstall | rollback) opts+=" --restart" ;;
	status) opts+=" --output" ;;
	check) opts+=" --output --fix --dry-run --shims --modules-dir --qemu --runtime-version
			--no-payload --qmp-timeout" ;;
	payload)
		if [ "$COMP_CWORD" -eq 2 ]; then
			COMPREPLY=($(compgen -W "pack import keygen --help" -- "$cur"))
			return
		fi
		opts="-o --output --spec --version --arch --sign --sign-pubkey --level --mtime --sha256
			--shims --help" ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -F _kata_deploy kata-deploy

_kata_build() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} i verb=""
	COMPREPLY=()
	local verbs="fetch component payload image push ci verify"
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in fetch | component | payload | image | push | ci | verify)
			verb=${COMP_WORDS[i]}; break ;;
		esac
	done
	case $prev in
	--artifacts | --cache | --out | --mirror | --layout | --keep)
		COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--output | --sign-key | --sign-pubkey | --payload | --agent | --waiter | --ca-bundle | --ca)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "--artifacts --cache --out --jobs --force --mirror --output
			--sign-key --sign-pubkey --payload --agent --layout --tag --no-libs --waiter
			--ca-bundle --registry --plain-http --mount-from --ca --pr --sha --no-push --keep
			--no-payload
			--verbose --quiet --help --version" -- "$cur"))
	elif [ -z "$verb" ]; then
		COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
	else
		local d=${KATA_BUILD_ARTIFACTS:-artifacts} names=""
		[ -d "$d" ] && names=$(find "$d" -maxdepth 2 -name '*.yaml' -path '*/recipes/*' -printf '%f\n' 2>/dev/null | sed 's/\.yaml$//')
		COMPREPLY=($(compgen -W "$names" -- "$cur"))
	fi
}
complete -F _kata_build kata-build

_kata_deploy_agent() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	COMPREPLY=()
	case $prev in
	--kubeconfig) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--host-root) COMPREPLY=($(compgen -d -- "$cur")); return ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "--kubeconfig --host-root --force --help --version" -- "$cur"))
	else
		COMPREPLY=($(compgen -W "install cleanup reset self-check" -- "$cur"))
	fi
}
complete -F _kata_deploy_agent kata-deploy-agent
