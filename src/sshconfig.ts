/** One entry of the generated ssh config. */
export interface SshHost {
    /** Host alias, e.g. headnode. */
    alias: string;
    /** Address SSH connects to. */
    hostName: string;
    /** Alias of the host SSH goes through first (a private worker's head); undefined connects directly. */
    proxyJump?: string;
}

/** Renders a block for `~/.ssh/config` with one `Host` entry per node. */
export function renderSshConfig(hosts: SshHost[], user: string, identityFile: string): string {
    return hosts.map((host) => [
        `Host ${host.alias}`,
        `    HostName ${host.hostName}`,
        ...(host.proxyJump ? [`    ProxyJump ${host.proxyJump}`] : []),
        `    User ${user}`,
        `    IdentityFile ${identityFile}`,
        "    IdentitiesOnly yes",
    ].join("\n")).join("\n\n") + "\n";
}

/** The command that forwards the dashboard to localhost through SSH, the only way in by default. */
export function dashboardTunnelCommand(headAlias: string, port: number): string {
    return `ssh -N -L ${port}:localhost:${port} ${headAlias}`;
}
