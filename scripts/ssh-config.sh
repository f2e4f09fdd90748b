#!/usr/bin/env bash
# Installs the cluster's SSH key and its block in ~/.ssh/config, from the stack outputs on stdin:
#   pulumi stack output --json --show-secrets | npm run --silent ssh-config
# Re-running replaces the block; entries outside it are never touched.
set -euo pipefail

die() {
    echo "ssh-config: error: $*" >&2
    exit 1
}

outputs=$(cat)
[ -n "$outputs" ] || die "no stack outputs on stdin; run: pulumi stack output --json --show-secrets | npm run --silent ssh-config"

output() {
    # shellcheck disable=SC2016 # the single-quoted text is JavaScript
    node -e '
        const [name] = process.argv.slice(1);
        let outputs;
        try { outputs = JSON.parse(require("fs").readFileSync(0, "utf8")); } catch (e) {
            console.error(`ssh-config: error: stdin is not the JSON of pulumi stack output --json: ${e.message}`); process.exit(1);
        }
        const value = outputs[name];
        if (typeof value !== "string" || value === "" || value === "[secret]") {
            console.error(`ssh-config: error: stack output ${name} is missing or hidden; pass --show-secrets to pulumi stack output`);
            process.exit(1);
        }
        process.stdout.write(value);
    ' "$1" <<<"$outputs"
}

key=$(output sshPrivateKey)
block=$(output sshConfig)
identity=$(awk '$1 == "IdentityFile" { print $2; exit }' <<<"$block")
[ -n "$identity" ] || die "sshConfig has no IdentityFile line"
identity=${identity/#\~/$HOME}

mkdir -p "${HOME}/.ssh"
chmod 700 "${HOME}/.ssh"
mkdir -p "$(dirname "$identity")"
(umask 077 && printf '%s\n' "$key" > "${identity}.new")
chmod 600 "${identity}.new"
mv -f "${identity}.new" "$identity"

config="${HOME}/.ssh/config"
touch "$config"
chmod 600 "$config"
others=$(sed '/^# BEGIN ray-cluster$/,/^# END ray-cluster$/d' "$config")
# The block goes first: ssh takes the first value it finds, so a later "Host *" cannot override it.
{
    printf '# BEGIN ray-cluster\n%s\n# END ray-cluster\n' "$block"
    if [ -n "$others" ]; then
        printf '%s\n' "$others"
    fi
} > "${config}.new"
mv -f "${config}.new" "$config"
echo "ssh-config: wrote ${identity} and the ray-cluster block of ${config}; try: ssh headnode"
