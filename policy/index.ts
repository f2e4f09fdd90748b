import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies";

new PolicyPack("ray-cluster", { enforcementLevel: "mandatory", policies });
