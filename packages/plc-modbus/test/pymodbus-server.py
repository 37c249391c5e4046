# A third-party Modbus server (pymodbus) for the cross-check test: python3 pymodbus-server.py tcp PORT | rtu PATH | rtu-tcp PORT
# (rtu-tcp: RTU frames over a TCP socket, the serial side of a gateway)
import sys, struct
from pymodbus.server import StartTcpServer, StartSerialServer
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
from pymodbus.transaction import ModbusRtuFramer

registers = [0] * 100
registers[0] = 111
registers[20] = 222
registers[50] = 555
registers[30], registers[31] = struct.unpack(">HH", struct.pack(">f", 21.5))
# Non-finite float32 words (big-endian): NaN 0x7FC00000, +Infinity 0x7F800000, -Infinity 0xFF800000.
registers[60], registers[61] = 0x7FC0, 0x0000
registers[62], registers[63] = 0x7F80, 0x0000
registers[64], registers[65] = 0xFF80, 0x0000
coils = [False] * 16
coils[3] = True
unit = ModbusSlaveContext(
    hr=ModbusSequentialDataBlock(0, registers),
    ir=ModbusSequentialDataBlock(0, [7] * 100),
    co=ModbusSequentialDataBlock(0, coils),
    di=ModbusSequentialDataBlock(0, [False] * 16),
    zero_mode=True,
)
context = ModbusServerContext(slaves={1: unit}, single=False)
if sys.argv[1] == "tcp":
    StartTcpServer(context=context, address=("127.0.0.1", int(sys.argv[2])))
elif sys.argv[1] == "rtu-tcp":
    StartTcpServer(context=context, framer=ModbusRtuFramer, address=("127.0.0.1", int(sys.argv[2])))
else:
    StartSerialServer(context=context, framer=ModbusRtuFramer, port=sys.argv[2], baudrate=19200, timeout=0.005)
