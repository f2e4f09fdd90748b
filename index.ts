import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { rayHeadTags } from "./src/autoscaler";
import { Autostop } from "./src/autostop";
import { clusterTags, loadConfig } from "./src/config";
import { ElasticWorkers } from "./src/elastic";
import { placeInExistingNetwork } from "./src/existing-network";
import { NodeRole } from "./src/iam";
import { JobArchive } from "./src/job-archive";
import { JobEnvironment, JOB_LOG_PREFIX } from "./src/job-environment";
import { ClusterKeyPair } from "./src/keypair";
import { LaunchedWorkers } from "./src/launched-workers";
import { Network } from "./src/network";
import { mostNodes } from "./src/groups";
import { HEAD_NODE_NAME, RayNodes } from "./src/nodes";
import { RayCluster, sshRoute } from "./src/ray";
import { imageRecipe, planRayImages, RayImages } from "./src/ray-image";
import { ClusterSecurity, DASHBOARD_PORT, GCS_PORT } from "./src/security";
import { SpotDrain } from "./src/spot-drain";
import { dashboardTunnelCommand, renderSshConfig } from "./src/sshconfig";
import { PipelineBuckets } from "./src/storage";

// A function, so that a given VPC's subnets are looked up and checked before any resource is registered.
export = async () => {
    const config = loadConfig();
    const tags = clusterTags(config);
    const name = config.project;
    const privateWorkers = config.workerNetwork === "private";

    // Which images the account holds decides which resources there are (a builder only for one it lacks).
    const plannedImages = config.rayImage ? await planRayImages(config, tags) : undefined;

    let network: Network | undefined;
    const placement = config.existingNetwork
        ? await placeInExistingNetwork(config.existingNetwork, {
            namespace: config.project,
            connectVia: config.connectVia,
            workersNeedInternet: config.bootstrapRay && config.packageIndexUrl === "" && !config.rayImage,
            workers: config.workerGroups.reduce((sum, group) => sum + mostNodes(group), 0),
            elasticWorkers: config.workerGroups.reduce((sum, group) => sum + (group.elastic?.maxCount ?? 0), 0),
            tags,
        })
        : (network = new Network(name, {
            vpcCidr: config.vpcCidr,
            subnetCidr: config.subnetCidr,
            availabilityZone: config.availabilityZone,
            privateWorkers: privateWorkers ? { cidrBlock: config.privateSubnetCidr, natGateway: config.natGateway } : undefined,
            elasticZones: config.elasticZoneSubnets,
            tags,
        })).placement;
    const security = new ClusterSecurity(name, {
        vpcId: placement.vpcId,
        sshAllowedCidrs: config.sshAllowedCidrs,
        dashboardAllowedCidrs: config.dashboardAllowedCidrs,
        privateWorkers,
        tags,
    });
    const sshKey = new ClusterKeyPair(name, { tags });
    const storage = new PipelineBuckets(name, { forceDestroy: config.bucketForceDestroy, tags });
    const headRole = new NodeRole(`${name}-head`, { bucketArns: storage.bucketArns, holder: "head", tags });
    const role = new NodeRole(name, { bucketArns: storage.bucketArns, holder: "nodes", tags });
    const elasticGroups = config.workerGroups.filter((group) => group.elastic !== undefined);
    const clusterName = `${config.project}-${config.stack}`;
    // Created before the head and deleted after it, once its autoscaler is gone with it (src/launched-workers.ts).
    const launched = elasticGroups.length > 0
        ? new LaunchedWorkers(name, {
            region: aws.config.region ?? "",
            profile: aws.config.profile ?? "",
            tags,
            clusterName,
            timeoutSeconds: config.bootstrapTimeoutSeconds,
            usedResources: [security, role, ...(network ? [network] : [])],
        })
        : undefined;
    const images = plannedImages
        ? new RayImages(name, {
            images: plannedImages,
            recipe: imageRecipe(config),
            access: { connectVia: config.connectVia, sshUser: config.sshUser, privateKey: sshKey.privateKeyOpenssh,
                timeoutSeconds: config.bootstrapTimeoutSeconds },
            builderInstanceType: config.headInstanceType,
            subnetId: placement.headSubnetId,
            vpcId: placement.vpcId,
            sshAllowedCidrs: config.sshAllowedCidrs,
            keyName: sshKey.keyPair.keyName,
            bootDependencies: placement.headBootDependencies,
            tags,
        })
        : undefined;
    const nodes = new RayNodes(name, {
        headInstanceType: config.headInstanceType,
        headVolumeSizeGb: config.volumeSizeGb,
        headAmiId: config.amiId,
        groups: config.workerGroups,
        headSubnetId: placement.headSubnetId,
        workerSubnetId: placement.workerSubnetId,
        privateWorkers,
        headSecurityGroupIds: security.headSecurityGroupIds,
        workerSecurityGroupIds: security.workerSecurityGroupIds,
        keyName: sshKey.keyPair.keyName,
        headInstanceProfileName: headRole.instanceProfile.name,
        workerInstanceProfileName: role.instanceProfile.name,
        headTags: launched ? rayHeadTags(clusterName) : {},
        headBootDependencies: [...placement.headBootDependencies, ...(launched ? [launched] : [])],
        workerBootDependencies: placement.workerBootDependencies,
        images,
        tags,
    });
    const access = {
        connectVia: config.connectVia,
        sshUser: config.sshUser,
        privateKey: sshKey.privateKeyOpenssh,
        timeoutSeconds: config.bootstrapTimeoutSeconds,
        jumpHost: privateWorkers ? nodes.head : undefined,
    };
    const region = nodes.head.running.region;
    const jobEnvironment = config.bootstrapRay
        ? new JobEnvironment(name, { ...access, nodes: [nodes.head, ...nodes.workers], region, bucketNames: storage.bucketNames })
        : undefined;
    const ray = jobEnvironment
        ? new RayCluster(name, {
            ...access,
            head: nodes.head,
            workers: nodes.workers,
            rayVersion: config.rayVersion,
            pythonInstaller: config.pythonInstaller,
            packageIndexUrl: config.packageIndexUrl,
            headSchedulable: config.headSchedulable,
            elasticGroups: elasticGroups.map((group) => ({ name: group.name, ...group.elastic! })),
            startAfter: (node) => [jobEnvironment.commands.get(node.name)!],
        })
        : undefined;
    const gcsAddress = pulumi.interpolate`${nodes.head.privateIp}:${GCS_PORT}`;
    const dashboardUrl = pulumi.interpolate`http://${nodes.head.privateIp}:${DASHBOARD_PORT}`;
    if (ray && jobEnvironment) {
        new JobArchive(name, {
            ...access,
            head: nodes.head,
            dashboardUrl,
            gcsAddress,
            after: [ray.headInstall, jobEnvironment.commands.get(nodes.head.name)!],
            pythonInstaller: config.pythonInstaller,
            packageIndexUrl: config.packageIndexUrl,
        });
    }
    const spotGroups = new Set(config.workerGroups.filter((group) => group.spot && group.elastic === undefined).map((group) => group.name));
    if (ray && spotGroups.size > 0) {
        new SpotDrain(name, { ...access, nodes: nodes.workers.filter((worker) => spotGroups.has(worker.group)), starts: ray.workerStarts });
    }
    if (ray && config.autostopIdleMinutes > 0) {
        new Autostop(name, {
            ...access,
            idleMinutes: config.autostopIdleMinutes,
            project: config.project,
            stack: config.stack,
            role: headRole.role,
            head: nodes.head,
            gcsAddress,
            dashboardUrl,
            rayInstall: ray.headInstall,
            pythonInstaller: config.pythonInstaller,
            packageIndexUrl: config.packageIndexUrl,
        });
    }
    const elastic = ray && elasticGroups.length > 0
        ? new ElasticWorkers(name, {
            ...access,
            groups: elasticGroups,
            idleMinutes: config.elasticIdleMinutes,
            clusterName,
            tags,
            head: nodes.head,
            headStart: ray.headStart,
            headRole: headRole.role,
            workerRole: role.role,
            workerInstanceProfileArn: role.instanceProfile.arn,
            workerSubnetIds: [placement.workerSubnetId, ...placement.elasticSubnetIds],
            workerSecurityGroupIds: security.workerSecurityGroupIds,
            privateWorkers,
            keyName: sshKey.keyPair.keyName,
            identityFile: config.sshIdentityFile,
            rayVersion: config.rayVersion,
            pythonInstaller: config.pythonInstaller,
            packageIndexUrl: config.packageIndexUrl,
            images,
        })
        : undefined;

    const allNodes = [nodes.head, ...nodes.workers];
    // The user's ssh takes the bootstrap's way to each node: private workers through the head.
    const sshHosts = pulumi.all(allNodes.map((node) => {
        const route = sshRoute(node, access);
        return route.host.apply((hostName) => ({ alias: node.name, hostName, proxyJump: route.via?.name }));
    }));
    const headPrivateIp = nodes.head.privateIp;

    return {
        headPublicIp: nodes.head.publicIp,
        headPrivateIp,
        workerPublicIps: privateWorkers ? [] : nodes.workers.map((worker) => worker.publicIp),
        workerPrivateIps: nodes.workers.map((worker) => worker.privateIp),
        workerNetwork: privateWorkers
            ? `private: workers have no public IP; reach them through ${HEAD_NODE_NAME} (sshConfig's ProxyJump)`
            : "public",
        bucketNames: storage.bucketNames,
        sshPrivateKey: sshKey.privateKeyOpenssh,
        sshConfig: sshHosts.apply((hosts) => renderSshConfig(hosts, config.sshUser, config.sshIdentityFile)),
        dashboardTunnel: dashboardTunnelCommand(HEAD_NODE_NAME, DASHBOARD_PORT),
        rayAddress: pulumi.interpolate`${headPrivateIp}:${GCS_PORT}`,
        rayClusterStatus: ray?.status,
        // What `npm run job` needs besides the ssh config: the client to run, where the dashboard is, where logs go.
        jobs: ray
            ? pulumi.all([region, storage.bucketNames]).apply(([r, buckets]) => ({
                rayVersion: config.rayVersion,
                dashboardPort: DASHBOARD_PORT,
                head: HEAD_NODE_NAME,
                region: r,
                profile: aws.config.profile ?? "",
                logs: `s3://${buckets.results}/${JOB_LOG_PREFIX}`,
                submit: "npm run job -- submit <dir> -- python <script>.py",
            }))
            : "off: bootstrapRay is false",
        elasticGroups: elastic?.summary ?? "none",
        autostop: config.autostopIdleMinutes > 0
            ? `stops every instance after ${config.autostopIdleMinutes} idle minutes; \`ssh ${HEAD_NODE_NAME} ray-cluster-autostop status\` ` +
                "says when, `ray-cluster-autostop hold` keeps it up, and `pulumi up` starts it again"
            : "off",
    };
};
