import * as pulumi from "@pulumi/pulumi";
import { Autostop } from "./src/autostop";
import { clusterTags, loadConfig } from "./src/config";
import { NodeRole } from "./src/iam";
import { ClusterKeyPair } from "./src/keypair";
import { Network } from "./src/network";
import { HEAD_NODE_NAME, RayNodes } from "./src/nodes";
import { RayCluster } from "./src/ray";
import { ClusterSecurity, DASHBOARD_PORT, GCS_PORT } from "./src/security";
import { dashboardTunnelCommand, renderSshConfig } from "./src/sshconfig";
import { PipelineBuckets } from "./src/storage";

const config = loadConfig();
const tags = clusterTags(config);
const name = config.project;

const network = new Network(name, {
    vpcCidr: config.vpcCidr,
    subnetCidr: config.subnetCidr,
    availabilityZone: config.availabilityZone,
    tags,
});
const security = new ClusterSecurity(name, {
    vpcId: network.vpc.id,
    sshAllowedCidrs: config.sshAllowedCidrs,
    dashboardAllowedCidrs: config.dashboardAllowedCidrs,
    tags,
});
const sshKey = new ClusterKeyPair(name, { tags });
const storage = new PipelineBuckets(name, { forceDestroy: config.bucketForceDestroy, tags });
const role = new NodeRole(name, { bucketArns: storage.bucketArns, tags });
const nodes = new RayNodes(name, {
    headInstanceType: config.headInstanceType,
    headVolumeSizeGb: config.volumeSizeGb,
    headAmiId: config.amiId,
    groups: config.workerGroups,
    subnetId: network.subnet.id,
    securityGroupId: security.securityGroup.id,
    keyName: sshKey.keyPair.keyName,
    instanceProfileName: role.instanceProfile.name,
    bootDependencies: network.internetRoute,
    tags,
});
const access = {
    connectVia: config.connectVia,
    sshUser: config.sshUser,
    privateKey: sshKey.privateKeyOpenssh,
    timeoutSeconds: config.bootstrapTimeoutSeconds,
};
const ray = config.bootstrapRay
    ? new RayCluster(name, {
        ...access,
        head: nodes.head,
        workers: nodes.workers,
        rayVersion: config.rayVersion,
        pythonInstaller: config.pythonInstaller,
        packageIndexUrl: config.packageIndexUrl,
        headSchedulable: config.headSchedulable,
    })
    : undefined;
if (ray && config.autostopIdleMinutes > 0) {
    new Autostop(name, {
        ...access,
        idleMinutes: config.autostopIdleMinutes,
        project: config.project,
        stack: config.stack,
        role: role.role,
        head: nodes.head,
        gcsAddress: pulumi.interpolate`${nodes.head.privateIp}:${GCS_PORT}`,
        dashboardUrl: pulumi.interpolate`http://${nodes.head.privateIp}:${DASHBOARD_PORT}`,
        rayInstall: ray.headInstall,
        pythonInstaller: config.pythonInstaller,
        packageIndexUrl: config.packageIndexUrl,
    });
}

const allNodes = [nodes.head, ...nodes.workers];

export const headPublicIp = nodes.head.publicIp;
export const headPrivateIp = nodes.head.privateIp;
export const workerPublicIps = nodes.workers.map((worker) => worker.publicIp);
export const workerPrivateIps = nodes.workers.map((worker) => worker.privateIp);
export const bucketNames = storage.bucketNames;
export const sshPrivateKey = sshKey.privateKeyOpenssh;
export const sshConfig = pulumi.all(allNodes.map((node) => node.publicIp)).apply((ips) => renderSshConfig(
    allNodes.map((node, i) => ({ alias: node.name, hostName: ips[i] })), config.sshUser, config.sshIdentityFile));
export const dashboardTunnel = dashboardTunnelCommand(HEAD_NODE_NAME, DASHBOARD_PORT);
export const rayAddress = pulumi.interpolate`${headPrivateIp}:${GCS_PORT}`;
export const rayClusterStatus = ray?.status;
export const autostop = config.autostopIdleMinutes > 0
    ? `stops every instance after ${config.autostopIdleMinutes} idle minutes; \`ssh ${HEAD_NODE_NAME} ray-cluster-autostop status\` ` +
        "says when, `ray-cluster-autostop hold` keeps it up, and `pulumi up` starts it again"
    : "off";
