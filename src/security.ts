import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** Inputs of the cluster's firewall. */
export interface ClusterSecurityArgs {
    /** VPC the security group belongs to. */
    vpcId: pulumi.Input<string>;
    /** CIDRs allowed to reach SSH (22). */
    sshAllowedCidrs: string[];
    /** CIDRs allowed to reach the dashboard (8265) and the Ray client port (10001) directly. */
    dashboardAllowedCidrs: string[];
    /** Whether workers are private: the rules for outside CIDRs then go on a group of the head's alone. */
    privateWorkers: boolean;
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

export const SSH_PORT = 22;
export const GCS_PORT = 6379;
export const DASHBOARD_PORT = 8265;
export const CLIENT_PORT = 10001;

/**
 * One security group for every node. Ray uses many ports between nodes, so members trust each other fully while
 * the outside reaches only SSH, plus the dashboard from chosen CIDRs. With private workers the outside's rules sit
 * on a second group that only the head has: a worker then answers SSH from cluster members alone.
 */
export class ClusterSecurity extends pulumi.ComponentResource {
    /** The group every node has. */
    public readonly securityGroup: aws.ec2.SecurityGroup;
    /** The group that admits SSH (and the dashboard) from outside: the cluster's own, or the head's with private workers. */
    public readonly edgeSecurityGroup: aws.ec2.SecurityGroup;
    /** The head's security groups. */
    public readonly headSecurityGroupIds: pulumi.Output<string>[];
    /** Every worker's security groups. */
    public readonly workerSecurityGroupIds: pulumi.Output<string>[];

    constructor(name: string, args: ClusterSecurityArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:security:ClusterSecurity", name, {}, opts);

        // Rules live in their own resources: inline rules and rule resources fight over the same group.
        this.securityGroup = new aws.ec2.SecurityGroup(`${name}-sg`, {
            vpcId: args.vpcId,
            description: "Ray cluster nodes: SSH from allowed CIDRs, everything between members",
            tags: { ...args.tags, Name: `${name}-sg` },
        }, { parent: this });
        const securityGroupId = this.securityGroup.id;
        this.edgeSecurityGroup = args.privateWorkers
            ? new aws.ec2.SecurityGroup(`${name}-head-sg`, {
                vpcId: args.vpcId,
                description: "Ray head node: SSH (and the dashboard) from allowed CIDRs; the way in to private workers",
                tags: { ...args.tags, Name: `${name}-head-sg` },
            }, { parent: this })
            : this.securityGroup;
        this.headSecurityGroupIds = args.privateWorkers ? [securityGroupId, this.edgeSecurityGroup.id] : [securityGroupId];
        this.workerSecurityGroupIds = [securityGroupId];

        const ingress = (ruleName: string, rule: Omit<aws.vpc.SecurityGroupIngressRuleArgs, "securityGroupId" | "tags">,
            group = this.edgeSecurityGroup) =>
            new aws.vpc.SecurityGroupIngressRule(`${name}-${ruleName}`, {
                securityGroupId: group.id,
                tags: args.tags,
                ...rule,
            }, { parent: this });

        // Rule names derive from the CIDR, not a list index, so editing the list touches only the rules it changes.
        const ruleKey = (cidr: string) => cidr.replace(/[./]/g, "-");

        args.sshAllowedCidrs.forEach((cidr) => ingress(`ssh-${ruleKey(cidr)}`, {
            description: `SSH from ${cidr}`,
            ipProtocol: "tcp",
            fromPort: SSH_PORT,
            toPort: SSH_PORT,
            cidrIpv4: cidr,
        }));

        ingress("intra-cluster", {
            description: "All traffic between cluster members: GCS, raylets, object managers, worker ports",
            ipProtocol: "-1",
            referencedSecurityGroupId: securityGroupId,
        }, this.securityGroup);

        for (const cidr of args.dashboardAllowedCidrs) {
            ingress(`dashboard-${ruleKey(cidr)}`, {
                description: `Ray dashboard and Jobs API from ${cidr}`,
                ipProtocol: "tcp",
                fromPort: DASHBOARD_PORT,
                toPort: DASHBOARD_PORT,
                cidrIpv4: cidr,
            });
            ingress(`client-${ruleKey(cidr)}`, {
                description: `Ray client from ${cidr}`,
                ipProtocol: "tcp",
                fromPort: CLIENT_PORT,
                toPort: CLIENT_PORT,
                cidrIpv4: cidr,
            });
        }

        // The provider drops AWS's implicit allow-all egress; nodes still need apt and the package index.
        new aws.vpc.SecurityGroupEgressRule(`${name}-egress-all`, {
            securityGroupId,
            description: "All outbound traffic",
            ipProtocol: "-1",
            cidrIpv4: "0.0.0.0/0",
            tags: args.tags,
        }, { parent: this });

        this.registerOutputs({ securityGroupId, headSecurityGroupId: this.edgeSecurityGroup.id });
    }
}
