import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

/** Inputs of the cluster's SSH key. */
export interface ClusterKeyPairArgs {
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/** An ED25519 key made by the stack and registered with EC2, so nobody creates or copies key pairs by hand. */
export class ClusterKeyPair extends pulumi.ComponentResource {
    public readonly keyPair: aws.ec2.KeyPair;
    /** OpenSSH private key; a secret in state and in outputs. */
    public readonly privateKeyOpenssh: pulumi.Output<string>;

    constructor(name: string, args: ClusterKeyPairArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:keypair:ClusterKeyPair", name, {}, opts);

        const key = new tls.PrivateKey(`${name}-key`, { algorithm: "ED25519" }, {
            parent: this,
            additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"],
        });
        this.privateKeyOpenssh = pulumi.secret(key.privateKeyOpenssh);

        this.keyPair = new aws.ec2.KeyPair(`${name}-keypair`, {
            publicKey: key.publicKeyOpenssh.apply((publicKey) => publicKey.trim()),
            tags: args.tags,
        }, { parent: this });

        this.registerOutputs({ keyName: this.keyPair.keyName });
    }
}
