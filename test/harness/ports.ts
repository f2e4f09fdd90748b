import * as net from "node:net";

/** A free TCP port on loopback, for a server a test starts there. */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = net.createServer().on("error", reject).listen(0, "127.0.0.1", () => {
            const { port } = server.address() as net.AddressInfo;
            server.close(() => resolve(port));
        });
    });
}
