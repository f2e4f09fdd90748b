import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** Inputs of the cluster's network. */
export interface NetworkArgs {
    /** IPv4 CIDR of the VPC. */
    vpcCidr: string;
    /** IPv4 CIDR of the public subnet, inside vpcCidr. */
    subnetCidr: string;
    /** Availability zone of the subnet; empty picks the region's first available zone. */
    availabilityZone: string;
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/** A VPC with one public subnet whose default route leads to an internet gateway. */
export class Network extends pulumi.ComponentResource {
    public readonly vpc: aws.ec2.Vpc;
    public readonly subnet: aws.ec2.Subnet;
    public readonly internetGateway: aws.ec2.InternetGateway;
    public readonly routeTable: aws.ec2.RouteTable;
    /** Resources that must exist before a node boots, or cloud-init finds no way to the internet. */
    public readonly internetRoute: pulumi.Resource[];

    constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:network:Network", name, {}, opts);
        const tagged = (suffix: string) => ({ ...args.tags, Name: `${name}-${suffix}` });

        this.vpc = new aws.ec2.Vpc(`${name}-vpc`, {
            cidrBlock: args.vpcCidr,
            enableDnsSupport: true,
            enableDnsHostnames: true,
            tags: tagged("vpc"),
        }, { parent: this });

        this.internetGateway = new aws.ec2.InternetGateway(`${name}-igw`, {
            vpcId: this.vpc.id,
            tags: tagged("igw"),
        }, { parent: this });

        // Zone names differ per account and region, so the default is looked up rather than assumed.
        const availabilityZone = args.availabilityZone !== ""
            ? pulumi.output(args.availabilityZone)
            : aws.getAvailabilityZonesOutput({ state: "available" }, { parent: this }).names[0];

        this.subnet = new aws.ec2.Subnet(`${name}-subnet`, {
            vpcId: this.vpc.id,
            cidrBlock: args.subnetCidr,
            availabilityZone,
            mapPublicIpOnLaunch: true,
            tags: tagged("subnet"),
        }, { parent: this });

        this.routeTable = new aws.ec2.RouteTable(`${name}-rt`, {
            vpcId: this.vpc.id,
            tags: tagged("rt"),
        }, { parent: this });

        const defaultRoute = new aws.ec2.Route(`${name}-default-route`, {
            routeTableId: this.routeTable.id,
            destinationCidrBlock: "0.0.0.0/0",
            gatewayId: this.internetGateway.id,
        }, { parent: this });

        const association = new aws.ec2.RouteTableAssociation(`${name}-rta`, {
            subnetId: this.subnet.id,
            routeTableId: this.routeTable.id,
        }, { parent: this });

        this.internetRoute = [defaultRoute, association];

        this.registerOutputs({
            vpcId: this.vpc.id,
            subnetId: this.subnet.id,
            defaultRouteId: defaultRoute.id,
            associationId: association.id,
        });
    }
}
