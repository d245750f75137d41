//! hearth-modbus
