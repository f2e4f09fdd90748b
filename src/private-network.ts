import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** Inputs of the workers' private subnet. */
export interface PrivateSubnetArgs {
    /** VPC the subnet belongs to. */
    vpcId: pulumi.Input<string>;
    /** IPv4 CIDR of the subnet, inside the VPC and apart from the public subnet. */
    cidrBlock: string;
    /** Zone of the subnet: the head's, so that Ray's traffic never crosses zones (billed, and slower). */
    availabilityZone: pulumi.Input<string>;
    /** Whether a NAT gateway gives the subnet internet egress; without it only the VPC and its endpoints are reachable. */
    natGateway: boolean;
    /** The public subnet the NAT gateway sits in. */
    publicSubnetId: pulumi.Input<string>;
    /** Without a NAT gateway of its own: one elsewhere (another zone's) that the default route leads to instead. */
    sharedNatGatewayId?: pulumi.Input<string>;
    /** The internet gateway the NAT gateway sends through; it must exist first. */
    internetGateway: aws.ec2.InternetGateway;
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/**
 * A subnet whose instances get no public address, with a route table of its own: its default route, if any, leads
 * to a NAT gateway in the public subnet, so workers can fetch packages while nothing on the internet can reach them.
 */
export class PrivateSubnet extends pulumi.ComponentResource {
    public readonly subnet: aws.ec2.Subnet;
    public readonly routeTable: aws.ec2.RouteTable;
    public readonly natGateway?: aws.ec2.NatGateway;
    /** Resources that must exist before a worker boots here: its route table and, with NAT, the way out. */
    public readonly egress: pulumi.Resource[];

    constructor(name: string, args: PrivateSubnetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:network:PrivateSubnet", name, {}, opts);
        const tagged = (suffix: string) => ({ ...args.tags, Name: `${name}-${suffix}` });

        this.subnet = new aws.ec2.Subnet(`${name}-subnet`, {
            vpcId: args.vpcId,
            cidrBlock: args.cidrBlock,
            availabilityZone: args.availabilityZone,
            mapPublicIpOnLaunch: false,
            tags: tagged("subnet"),
        }, { parent: this });

        this.routeTable = new aws.ec2.RouteTable(`${name}-rt`, {
            vpcId: args.vpcId,
            tags: tagged("rt"),
        }, { parent: this });

        const association = new aws.ec2.RouteTableAssociation(`${name}-rta`, {
            subnetId: this.subnet.id,
            routeTableId: this.routeTable.id,
        }, { parent: this });
        this.egress = [association];

        if (args.natGateway) {
            const address = new aws.ec2.Eip(`${name}-nat-eip`, {
                domain: "vpc",
                tags: tagged("nat-eip"),
            }, { parent: this });
            this.natGateway = new aws.ec2.NatGateway(`${name}-nat`, {
                allocationId: address.allocationId,
                subnetId: args.publicSubnetId,
                connectivityType: "public",
                tags: tagged("nat"),
            }, { parent: this, dependsOn: [args.internetGateway] });
            this.egress.push(new aws.ec2.Route(`${name}-default-route`, {
                routeTableId: this.routeTable.id,
                destinationCidrBlock: "0.0.0.0/0",
                natGatewayId: this.natGateway.id,
            }, { parent: this }));
        }

        if (!args.natGateway && args.sharedNatGatewayId !== undefined) {
            this.egress.push(new aws.ec2.Route(`${name}-default-route`, {
                routeTableId: this.routeTable.id,
                destinationCidrBlock: "0.0.0.0/0",
                natGatewayId: args.sharedNatGatewayId,
            }, { parent: this }));
        }

        this.registerOutputs({
            subnetId: this.subnet.id,
            routeTableId: this.routeTable.id,
            natGatewayId: this.natGateway?.id,
        });
    }
}
