import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { ZoneSubnet } from "./config";
import { PrivateSubnet } from "./private-network";
import { ElasticZones } from "./zones";

/** Where the cluster's nodes go, and what must exist before each boots: the stack's own network or a given one. */
export interface ClusterPlacement {
    /** The VPC. */
    vpcId: pulumi.Input<string>;
    /** The head's subnet. */
    headSubnetId: pulumi.Input<string>;
    /** The workers' subnet: the head's, or a private one. */
    workerSubnetId: pulumi.Input<string>;
    /** Whether workers sit in a private subnet, reached only through the head. */
    privateWorkers: boolean;
    /** Resources that must exist before the head boots (the route the bootstrap's SSH comes in by). */
    headBootDependencies: pulumi.Resource[];
    /** Resources that must exist before a worker boots (its subnet's way to the package index). */
    workerBootDependencies: pulumi.Resource[];
    /** Subnets in other zones where elastic groups may also launch, after workerSubnetId. */
    elasticSubnetIds: pulumi.Input<string>[];
    /** Resources that must exist before an elastic worker boots in one of those subnets. */
    elasticBootDependencies: pulumi.Resource[];
}

/** Inputs of the cluster's network. */
export interface NetworkArgs {
    /** IPv4 CIDR of the VPC. */
    vpcCidr: string;
    /** IPv4 CIDR of the public subnet, inside vpcCidr. */
    subnetCidr: string;
    /** Availability zone of the subnet; empty picks the region's first available zone. */
    availabilityZone: string;
    /** The workers' private subnet, or undefined to keep workers in the public one. */
    privateWorkers?: {
        /** IPv4 CIDR of the private subnet. */
        cidrBlock: string;
        /** Whether a NAT gateway gives it internet egress. */
        natGateway: boolean;
    };
    /** Subnets for elastic groups in zones besides the head's, each with its blocks. */
    elasticZones: ZoneSubnet[];
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/**
 * A VPC with one public subnet whose default route leads to an internet gateway, optionally a private subnet for
 * the workers, and an S3 gateway endpoint on every route table: bucket traffic stays inside AWS, costs nothing,
 * and never passes through the NAT gateway, which bills per GB.
 */
export class Network extends pulumi.ComponentResource {
    public readonly vpc: aws.ec2.Vpc;
    public readonly subnet: aws.ec2.Subnet;
    public readonly internetGateway: aws.ec2.InternetGateway;
    public readonly routeTable: aws.ec2.RouteTable;
    /** Resources that must exist before a node boots, or cloud-init finds no way to the internet. */
    public readonly internetRoute: pulumi.Resource[];
    public readonly privateSubnet?: PrivateSubnet;
    public readonly s3Endpoint: aws.ec2.VpcEndpoint;
    /** Where the nodes go. */
    public readonly placement: ClusterPlacement;

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

        if (args.privateWorkers) {
            this.privateSubnet = new PrivateSubnet(`${name}-private`, {
                vpcId: this.vpc.id,
                cidrBlock: args.privateWorkers.cidrBlock,
                availabilityZone: this.subnet.availabilityZone,
                natGateway: args.privateWorkers.natGateway,
                publicSubnetId: this.subnet.id,
                internetGateway: this.internetGateway,
                tags: args.tags,
            }, { parent: this });
        }

        const zones = args.elasticZones.length > 0
            ? new ElasticZones(`${name}-zones`, {
                vpcId: this.vpc.id,
                zones: args.elasticZones,
                privateWorkers: this.privateSubnet !== undefined,
                publicRouteTableId: this.routeTable.id,
                internetGateway: this.internetGateway,
                sharedNatGatewayId: this.privateSubnet?.natGateway?.id,
                tags: args.tags,
            }, { parent: this })
            : undefined;

        // The service name carries the region and partition (com.amazonaws.us-east-1.s3, cn.com.amazonaws…).
        const s3 = aws.ec2.getVpcEndpointServiceOutput({ service: "s3", serviceType: "Gateway" }, { parent: this });
        this.s3Endpoint = new aws.ec2.VpcEndpoint(`${name}-s3-endpoint`, {
            vpcId: this.vpc.id,
            serviceName: s3.serviceName,
            vpcEndpointType: "Gateway",
            routeTableIds: [this.routeTable.id, ...(this.privateSubnet ? [this.privateSubnet.routeTable.id] : []),
                ...(zones?.routeTableIds ?? [])],
            tags: tagged("s3-endpoint"),
        }, { parent: this });

        this.placement = {
            vpcId: this.vpc.id,
            headSubnetId: this.subnet.id,
            workerSubnetId: this.privateSubnet?.subnet.id ?? this.subnet.id,
            privateWorkers: this.privateSubnet !== undefined,
            headBootDependencies: this.internetRoute,
            workerBootDependencies: this.privateSubnet?.egress ?? this.internetRoute,
            elasticSubnetIds: zones?.subnetIds ?? [],
            elasticBootDependencies: zones?.egress ?? [],
        };

        this.registerOutputs({
            vpcId: this.vpc.id,
            subnetId: this.subnet.id,
            privateSubnetId: this.privateSubnet?.subnet.id,
            s3EndpointId: this.s3Endpoint.id,
            defaultRouteId: defaultRoute.id,
            associationId: association.id,
        });
    }
}
