//! The driver's device on Windows: found by its interface GUID (CM_Get_Device_Interface_List) and
//! driven with DeviceIoControl. Type-checked for x86_64-pc-windows-msvc; not run on Windows yet.

use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_Device_Interface_List_SizeW,
    CM_Get_Device_Interface_ListW, CR_SUCCESS,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::core::GUID;

use wsk::NtStatus;

use super::{Device, DeviceError};

/// An open handle to the wskaccept device.
///
/// Invariant: `handle` is a valid open handle, closed once on drop.
pub struct DriverDevice {
    handle: HANDLE,
}

fn interface_guid() -> GUID {
    let g = ioctl::DEVICE_INTERFACE_GUID;
    GUID {
        data1: g.data1,
        data2: g.data2,
        data3: g.data3,
        data4: g.data4,
    }
}

impl DriverDevice {
    /// Opens the first present wskaccept interface.
    pub fn open() -> Result<Self, DeviceError> {
        let guid = interface_guid();
        let mut len = 0u32;
        // SAFETY: valid GUID and out-pointer; no device instance filter.
        let cr = unsafe {
            CM_Get_Device_Interface_List_SizeW(
                &raw mut len,
                &raw const guid,
                core::ptr::null(),
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        if cr != CR_SUCCESS || len <= 1 {
            return Err(DeviceError::NoDevice);
        }
        let mut list = vec![0u16; len as usize];
        // SAFETY: the buffer holds `len` UTF-16 units as the size call asked.
        let cr = unsafe {
            CM_Get_Device_Interface_ListW(
                &raw const guid,
                core::ptr::null(),
                list.as_mut_ptr(),
                len,
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        if cr != CR_SUCCESS || list[0] == 0 {
            return Err(DeviceError::NoDevice);
        }
        Self::open_wide(&list)
    }

    /// Opens a device by path (`\\.\NAME`), for a build without the device interface.
    pub fn open_path(path: &Path) -> Result<Self, DeviceError> {
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
        Self::open_wide(&wide)
    }

    /// CreateFileW on a NUL-terminated UTF-16 path.
    fn open_wide(path: &[u16]) -> Result<Self, DeviceError> {
        if !path.contains(&0) {
            return Err(DeviceError::NoDevice);
        }
        // SAFETY: `path` is NUL-terminated (checked above).
        let handle = unsafe {
            CreateFileW(
                path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                core::ptr::null(),
                OPEN_EXISTING,
                0,
                core::ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(DeviceError::NoDevice);
        }
        Ok(Self { handle })
    }
}

/// The NTSTATUS a Win32 error from DeviceIoControl most likely came from (the I/O manager maps
/// NTSTATUS to Win32 errors; this maps back the ones the driver uses).
fn status_of_win32(error: u32) -> NtStatus {
    match error {
        1 => NtStatus::INVALID_DEVICE_REQUEST,
        5 => NtStatus::ACCESS_DENIED,
        21 => NtStatus::DEVICE_NOT_READY,
        50 => NtStatus::NOT_SUPPORTED,
        87 => NtStatus::INVALID_PARAMETER,
        122 => NtStatus::BUFFER_TOO_SMALL,
        1168 => NtStatus::NOT_FOUND,
        1227 => NtStatus::ADDRESS_ALREADY_ASSOCIATED,
        1306 => NtStatus::REVISION_MISMATCH,
        1450 => NtStatus::INSUFFICIENT_RESOURCES,
        1816 => NtStatus::QUOTA_EXCEEDED,
        _ => NtStatus::UNSUCCESSFUL,
    }
}

impl Device for DriverDevice {
    fn control(
        &self,
        code: u32,
        input: &[u8],
        output_len: usize,
    ) -> Result<(NtStatus, Vec<u8>), DeviceError> {
        let mut output = vec![0u8; output_len];
        let mut returned = 0u32;
        let in_len = u32::try_from(input.len())
            .map_err(|_| DeviceError::Broken("input too large".into()))?;
        let out_len = u32::try_from(output.len())
            .map_err(|_| DeviceError::Broken("output too large".into()))?;
        // SAFETY: valid handle; buffers and lengths match; synchronous (no OVERLAPPED).
        let ok = unsafe {
            DeviceIoControl(
                self.handle,
                code,
                input.as_ptr().cast(),
                in_len,
                output.as_mut_ptr().cast(),
                out_len,
                &raw mut returned,
                core::ptr::null_mut(),
            )
        };
        if ok == 0 {
            // SAFETY: no preconditions.
            let error = unsafe { GetLastError() };
            return Ok((status_of_win32(error), Vec::new()));
        }
        output.truncate(returned as usize);
        Ok((NtStatus::SUCCESS, output))
    }
}

impl Drop for DriverDevice {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { CloseHandle(self.handle) };
    }
}
