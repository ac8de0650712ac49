"""A Modbus TCP device for the modbus-poller tests: pymodbus's server on 127.0.0.1:<argv[1]>
with holding registers 0-199, set from stdin lines `set <address> <value> [<value> ...]`
(each answered `ok` on stdout once the registers hold it). Ends when stdin closes."""

import asyncio
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import ModbusTcpServer


async def commands(device, server):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.split()
        if words and words[0] == b"set":
            device.setValues(3, int(words[1]), [int(w) for w in words[2:]])
            print("ok", flush=True)
    await server.shutdown()


async def main():
    device = ModbusSlaveContext(hr=ModbusSequentialDataBlock(0, [0] * 201))
    context = ModbusServerContext(slaves=device, single=True)
    server = ModbusTcpServer(context, address=("127.0.0.1", int(sys.argv[1])))
    task = asyncio.create_task(commands(device, server))
    await server.serve_forever()
    await task


asyncio.run(main())
