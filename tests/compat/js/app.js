// Compatibility guest for ComponentizeJS (StarlingMonkey): a wasi:http 0.2 proxy.
// GET / says hello, POST /echo streams the request body back, anything else is 404.
// StarlingMonkey's `fetch` event implements wasi:http/incoming-handler for us.

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const path = new URL(request.url).pathname;
  if (request.method === "GET" && path === "/") {
    return new Response("hello from js\n");
  }
  if (request.method === "POST" && path === "/echo") {
    // The request's body stream becomes the response's: streamed, never read whole.
    return new Response(request.body);
  }
  return new Response("", { status: 404 });
}
