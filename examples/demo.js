'use strict'
// A uhura server and three clients on 127.0.0.1: events both ways with
// acknowledgements, the shared session, a dropped connection that the client
// resumes, and a clean shutdown. Exits by itself.
const uhura = require('..')

const log = (who, ...what) => console.log(`[${who}]`.padEnd(10), ...what)

const server = uhura.createServer((conn, reconnect) => {
  const name = () => conn.get('name') || conn.get('sessionID').slice(0, 6)
  log('server', `${name()} ${reconnect ? 'resumed its session' : 'connected'} (objectMode=${conn.objectMode}, acks=${conn.enableAcks})`)
  conn.on('_set', (key, value) => log('server', `${name()} set ${JSON.stringify(key)} = ${JSON.stringify(value)}`))
  conn.on('ping', (n, sentAt) => {
    conn.set('pings', (conn.get('pings') || 0) + 1)
    conn.send('pong', n, Date.now() - sentAt)
  })
  conn.on('shout', (text) => log('server', `${name()} shouts: ${text}`))
  conn.on('disconnect', () => log('server', `${name()} disconnected`))
})

server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address()
  log('server', `listening on 127.0.0.1:${port}`)

  const names = ['alice', 'bob', 'carol']
  await Promise.all(names.map((name) => runClient(name, port)))

  server.close(() => {
    log('server', 'closed; the process exits by itself now')
  })
})

function runClient (name, port) {
  return new Promise((resolve) => {
    const client = uhura.createClient(port, '127.0.0.1')
    client.autoReconnect(20, 1000)
    client.set('name', name)
    let connects = 0
    let pongs = 0
    client.on('connect', () => {
      connects++
      log(name, `connected (#${connects}), session id ${client.get('sessionID')}`)
      if (connects === 1) {
        client.send('shout', `hello from ${name} ☃`, () => log(name, 'the server acknowledged my shout'))
        for (let n = 1; n <= 3; n++) client.send('ping', n, Date.now())
      }
    })
    client.on('pong', (n, ms) => {
      pongs++
      log(name, `pong ${n} (server saw it ${ms} ms after sending), server counted ${client.get('pings')} pings`)
      if (pongs === 3) {
        log(name, 'dropping my connection on purpose; autoReconnect brings it back')
        client.socket.destroy()
      }
    })
    client.on('reconnecting', ({ attempt, delay }) => log(name, `reconnecting, attempt ${attempt} in ${delay.toFixed(1)} ms`))
    client.on('connect', () => {
      if (connects === 2) {
        log(name, `back, same session: pings=${client.get('pings')}`)
        client.send('shout', `${name} is leaving`, () => client.disconnect())
      }
    })
    client.on('disconnect', () => {
      if (connects === 2) resolve()
    })
  })
}
