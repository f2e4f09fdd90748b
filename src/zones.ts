import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { ZoneSubnet } from "./config";
import { PrivateSubnet } from "./private-network";

/** Inputs of the elastic groups' subnets in zones besides the head's. */
export interface ElasticZonesArgs {
    /** The VPC. */
    vpcId: pulumi.Input<string>;
    /** Each zone with its workers' block, and its NAT gateway's block when it has its own. */
    zones: ZoneSubnet[];
    /** Whether workers are private: no public IP, egress through a NAT gateway if any. */
    privateWorkers: boolean;
    /** The public route table (its default route leads to the internet gateway), for public subnets. */
    publicRouteTableId: pulumi.Input<string>;
    /** The internet gateway a zone's own NAT gateway sends through. */
    internetGateway: aws.ec2.InternetGateway;
    /** The head zone's NAT gateway, which zones without their own share; undefined when private workers have none. */
    sharedNatGatewayId?: pulumi.Input<string>;
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/**
 * A worker subnet in each elastic zone, for Ray's autoscaler to try in turn when EC2 refuses a launch. Public workers
 * get a public subnet on the stack's public route table. Private workers get a private subnet whose default route
 * leads to the head zone's NAT gateway (shared: its cross-zone data is billed), to a NAT gateway of the zone's own in
 * a small public subnet there (natGatewayPerZone), or nowhere (natGateway false).
 */
export class ElasticZones extends pulumi.ComponentResource {
    /** Each zone's worker subnet id, in the configured order. */
    public readonly subnetIds: pulumi.Output<string>[];
    /** The private subnets' route tables, for the S3 gateway endpoint. */
    public readonly routeTableIds: pulumi.Output<string>[];
    /** What must exist before a worker boots in any of the zones: its route table and, with NAT, the way out. */
    public readonly egress: pulumi.Resource[];

    constructor(name: string, args: ElasticZonesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:network:ElasticZones", name, {}, opts);
        const tagged = (suffix: string) => ({ ...args.tags, Name: `${name}-${suffix}` });

        this.subnetIds = [];
        this.routeTableIds = [];
        this.egress = [];
        for (const zone of args.zones) {
            if (!args.privateWorkers) {
                const subnet = new aws.ec2.Subnet(`${name}-${zone.zone}-subnet`, {
                    vpcId: args.vpcId, cidrBlock: zone.cidrBlock, availabilityZone: zone.zone, mapPublicIpOnLaunch: true,
                    tags: tagged(`${zone.zone}-subnet`),
                }, { parent: this });
                this.egress.push(new aws.ec2.RouteTableAssociation(`${name}-${zone.zone}-rta`, {
                    subnetId: subnet.id, routeTableId: args.publicRouteTableId,
                }, { parent: this }));
                this.subnetIds.push(subnet.id);
                continue;
            }
            // A zone with a NAT gateway of its own keeps it in a public subnet of that zone.
            let natSubnetId: pulumi.Output<string> | undefined;
            if (zone.natCidrBlock !== undefined) {
                const natSubnet = new aws.ec2.Subnet(`${name}-${zone.zone}-nat-subnet`, {
                    vpcId: args.vpcId, cidrBlock: zone.natCidrBlock, availabilityZone: zone.zone, mapPublicIpOnLaunch: false,
                    tags: tagged(`${zone.zone}-nat-subnet`),
                }, { parent: this });
                this.egress.push(new aws.ec2.RouteTableAssociation(`${name}-${zone.zone}-nat-rta`, {
                    subnetId: natSubnet.id, routeTableId: args.publicRouteTableId,
                }, { parent: this }));
                natSubnetId = natSubnet.id;
            }
            const subnet = new PrivateSubnet(`${name}-${zone.zone}`, {
                vpcId: args.vpcId,
                cidrBlock: zone.cidrBlock,
                availabilityZone: zone.zone,
                natGateway: natSubnetId !== undefined,
                publicSubnetId: natSubnetId ?? "",
                sharedNatGatewayId: natSubnetId === undefined ? args.sharedNatGatewayId : undefined,
                internetGateway: args.internetGateway,
                tags: args.tags,
            }, { parent: this });
            this.subnetIds.push(subnet.subnet.id);
            this.routeTableIds.push(subnet.routeTable.id);
            this.egress.push(...subnet.egress);
        }

        this.registerOutputs({ subnetIds: this.subnetIds });
    }
}
