// Drives `qins serve` with the official OpenAI Node client (npm "openai" v4).
import OpenAI from "openai";
const base = process.env.BASE || "http://127.0.0.1:8080/v1";
const client = new OpenAI({ baseURL: base, apiKey: process.env.KEY || "none" });
const models = await client.models.list();
console.log("models:", models.data.map(m => m.id));
const id = models.data[0].id;
const r = await client.chat.completions.create({ model: id, temperature: 0, max_tokens: 24,
  messages: [{ role: "system", content: "You are brief." }, { role: "user", content: "Say hello." }] });
console.log("chat:", JSON.stringify(r.choices[0].message), r.choices[0].finish_reason, JSON.stringify(r.usage));
const stream = await client.chat.completions.create({ model: id, temperature: 0, max_tokens: 24, stream: true,
  stream_options: { include_usage: true }, messages: [{ role: "user", content: "Say hello." }] });
let text = "", chunks = 0, finish = null, usage = null;
for await (const c of stream) { chunks++; if (c.choices.length) { text += c.choices[0].delta.content ?? ""; finish = c.choices[0].finish_reason ?? finish; } if (c.usage) usage = c.usage; }
console.log("stream:", chunks, "chunks,", JSON.stringify(text), finish, JSON.stringify(usage));

const c = await client.completions.create({ model: id, prompt: "Once upon a time", max_tokens: 12, temperature: 0 });
console.log("completion:", JSON.stringify(c.choices[0].text), c.choices[0].finish_reason);
try { await client.chat.completions.create({ model: id, messages: [{ role: "user", content: 5 }] }); }
catch (e) { console.log("bad request ->", e.status, e.error?.param ?? e.param, e.message); }
try { await client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }); }
catch (e) { console.log("unknown model ->", e.status, e.message); }
